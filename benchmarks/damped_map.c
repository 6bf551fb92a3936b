/* Scalar C reference of the damped Stormer-Verlet map (3.2) with A = a I, E = e I:
 *     q += (delta/2) a p;  p = e p - delta grad V(q);  q += (delta/2) a p
 * Same loop structure as bayescg's numba kernel (blocks of walkers outer, steps inner; -DLANES=4
 * interleaves 4 walkers as numba's d = 1 loop does, LANES = 1 is the plain scalar loop) and the same
 * arithmetic in the same order; the gradient is generated from the same sympy expression
 * (grad.h, written by bench_integrators.py).  Compile with -ffp-contract=off
 * -fno-tree-slp-vectorize so that no fused multiply-adds change the rounding (numba never
 * contracts; gcc 12's SLP vectorizer emits vfmaddsub even under -ffp-contract=off).
 *
 * usage: damped_map W NSTEPS DELTA A E IN OUT
 *   IN: 2*W*DIM doubles (q then p, row-major (W, DIM)); OUT: the same after NSTEPS steps.
 *   Prints the seconds spent in the loop (excluding I/O) on stdout.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "grad.h" /* defines DIM and static void grad(const double *q, double *out) */
#ifndef LANES
#define LANES 1
#endif

int main(int argc, char **argv) {
    if (argc != 8) {
        fprintf(stderr, "usage: %s W NSTEPS DELTA A E IN OUT\n", argv[0]);
        return 2;
    }
    long W = atol(argv[1]);
    long nsteps = atol(argv[2]);
    double delta = atof(argv[3]), a = atof(argv[4]), e = atof(argv[5]);
    double *q = malloc(sizeof(double) * W * DIM), *p = malloc(sizeof(double) * W * DIM);
    FILE *f = fopen(argv[6], "rb");
    if (!f || fread(q, sizeof(double), W * DIM, f) != (size_t)(W * DIM) ||
        fread(p, sizeof(double), W * DIM, f) != (size_t)(W * DIM)) {
        fprintf(stderr, "cannot read %s\n", argv[6]);
        return 1;
    }
    fclose(f);
    double h = 0.5 * delta;
    struct timespec t0, t1;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t0);
    /* LANES walkers are advanced together, interleaved step by step (LANES = 1: one walker at a
     * time, the plain scalar loop).  Interleaving lets the CPU overlap independent gradients. */
    for (long w0 = 0; w0 < W; w0 += LANES) {
        int nl = (W - w0 < LANES) ? (int)(W - w0) : LANES;
        double qw[LANES][DIM], pw[LANES][DIM], g[DIM];
        for (int l = 0; l < nl; l++)
            for (int i = 0; i < DIM; i++) {
                qw[l][i] = q[(w0 + l) * DIM + i];
                pw[l][i] = p[(w0 + l) * DIM + i];
            }
        for (long s = 0; s < nsteps; s++) {
            for (int l = 0; l < nl; l++) {
                for (int i = 0; i < DIM; i++) qw[l][i] += h * a * pw[l][i];
                grad(qw[l], g);
                for (int i = 0; i < DIM; i++) pw[l][i] = e * pw[l][i] - delta * g[i];
                for (int i = 0; i < DIM; i++) qw[l][i] += h * a * pw[l][i];
            }
        }
        for (int l = 0; l < nl; l++)
            for (int i = 0; i < DIM; i++) {
                q[(w0 + l) * DIM + i] = qw[l][i];
                p[(w0 + l) * DIM + i] = pw[l][i];
            }
    }
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t1);
    printf("%.9f\n", (t1.tv_sec - t0.tv_sec) + 1e-9 * (t1.tv_nsec - t0.tv_nsec));
    f = fopen(argv[7], "wb");
    fwrite(q, sizeof(double), W * DIM, f);
    fwrite(p, sizeof(double), W * DIM, f);
    fclose(f);
    return 0;
}
