"""NUTS's target acceptance on the Ising marginal posterior of models/ising-nn.toml: divergent transitions per run of
4 chains x (1000 tuning + 1000 draws), seeds 1..N, nutpie on the cached kernel (MarginalDensity), as `bayescg ising`
samples it, for each target acceptance given.

    python benchmarks/ising_target_accept.py [--seeds 20] [--targets 0.9,0.95]
"""
import argparse
from pathlib import Path

from bayescg.config import load_model
from bayescg.ising.kernel import MarginalDensity
from bayescg.ising.pipeline import build, load_data
from bayescg.sampling import sample


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--targets", default="0.9,0.95")
    args = ap.parse_args()
    model = load_model(Path(__file__).resolve().parents[1] / "models" / "ising-nn.toml")
    fine, cm = build(model)
    x, _ = load_data(model, fine)
    dens = MarginalDensity(cm, x, 2.0)
    for ta in (float(t) for t in args.targets.split(",")):
        div, steps = [], []
        for seed in range(1, args.seeds + 1):
            idata = sample(dens, draws=1000, tune=1000, chains=4, seed=seed, target_accept=ta, nuts_sampler="nutpie")
            div.append(int(idata.sample_stats["diverging"].sum()))
            steps.append(float(idata.sample_stats["n_steps"].mean()))
        print(f"target_accept {ta}: divergences per run {div}; runs with any {sum(d > 0 for d in div)} of "
              f"{len(div)}, total {sum(div)}; gradient evaluations per draw {min(steps):.1f}-{max(steps):.1f}",
              flush=True)


if __name__ == "__main__":
    main()
