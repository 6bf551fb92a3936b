/* Scalar C reference of the damped Stormer-Verlet map (3.2) with A = a I, E = e I:
 *     q += (delta/2) a p;  p = e p - delta grad V(q);  q += (delta/2) a p
 * Same loop structure as bayescg's numba kernel (walkers outer, steps inner) and the same
 * arithmetic in the same order; the gradient is generated from the same sympy expression
 * (grad.h, written by bench_integrators.py).  Compile with -ffp-contract=off so that no
 * fused multiply-adds change the rounding (numba does not contract either).
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
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (long w = 0; w < W; w++) {
        double qw[DIM], pw[DIM], g[DIM];
        for (int i = 0; i < DIM; i++) {
            qw[i] = q[w * DIM + i];
            pw[i] = p[w * DIM + i];
        }
        for (long s = 0; s < nsteps; s++) {
            for (int i = 0; i < DIM; i++) qw[i] += h * a * pw[i];
            grad(qw, g);
            for (int i = 0; i < DIM; i++) pw[i] = e * pw[i] - delta * g[i];
            for (int i = 0; i < DIM; i++) qw[i] += h * a * pw[i];
        }
        for (int i = 0; i < DIM; i++) {
            q[w * DIM + i] = qw[i];
            p[w * DIM + i] = pw[i];
        }
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    printf("%.9f\n", (t1.tv_sec - t0.tv_sec) + 1e-9 * (t1.tv_nsec - t0.tv_nsec));
    f = fopen(argv[7], "wb");
    fwrite(q, sizeof(double), W * DIM, f);
    fwrite(p, sizeof(double), W * DIM, f);
    fclose(f);
    return 0;
}
