#!/usr/bin/env python3
"""Regression runs: small named training cases compared with golden values recorded per hardware.

Each case in cases/ is the shared config (base.yaml) with a few keys changed and a number of ranks.
A run trains every case, reads its metrics.jsonl and compares it with golden/<hardware>/<case>.json:
loss and grad norm bit for bit where the golden was recorded on the same libraries and processor
(and the hardware profile says its runs are deterministic), else within the case's rtol; peak memory
within memory_rtol; the median time of the steady steps reported, failing only beyond time_slack.
Cases of one parity group are the same training on different layouts and must agree with each
other; a case with `resume` is also resumed from a checkpoint halfway and must continue the same
losses. docs/regression.md describes the files; scripts/regression.sh is the command.
"""
import argparse
import datetime
import json
import math
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
# The data every case trains on, made in the work folder (base.yaml's data.path is the default one).
DATA_SYNTH = ["data", "synth", "--task", "passkey", "--docs", "600", "--min-len", "150", "--max-len", "1500", "--seed", "7"]
# The first steps fill caches and grow allocators; time is the median of the steps after them.
WARM_STEPS = 2
# The figures of a step that goldens keep.
STEP_FIGURES = ("loss", "grad_norm", "tokens_per_s", "step_time_s", "peak_mem_bytes")


class RegressionError(Exception):
    """A problem with the cases, goldens or command line that the user must fix."""


@dataclass
class Profile:
    """How cases run on one kind of hardware (hardware/<name>.yaml)."""
    name: str
    kind: str = "cpu"                            # cpu | gpu: which cases apply
    set: dict = field(default_factory=dict)      # config keys every case gets on this hardware
    exact: bool = True                           # same libraries and processor give the same bits
    rtol: float = 1e-9                           # loss and grad norm where the bits may differ
    parity_rtol: float = 1e-10                   # between the layouts of one parity group
    memory_rtol: float = 0.05
    time_slack: float = 3.0                      # a case fails when its median step is this much slower
    share_gpu: bool = False                      # ranks share one GPU (each claims a host of its own for NCCL)


@dataclass
class Case:
    name: str
    about: str
    ranks: int = 1
    nodes: int = 1
    hardware: str = "any"                        # any | cpu | gpu
    set: dict = field(default_factory=dict)
    parity: str = ""
    resume: dict = None                          # {at: step, ranks: n, set: {...}}
    rtol: float = None                           # None: the profile's
    parity_rtol: float = None
    time_slack: float = None


def read_yaml(path, kind):
    try:
        with open(path) as f:
            data = yaml.safe_load(f) or {}
    except FileNotFoundError:
        raise RegressionError(f"no {kind} file {path}")
    except yaml.YAMLError as e:
        raise RegressionError(f"{path} is not valid YAML: {e}")
    if not isinstance(data, dict):
        raise RegressionError(f"{path}: a {kind} is a mapping of keys, not {type(data).__name__}")
    return data


def build(cls, path, data, **fixed):
    allowed = set(cls.__dataclass_fields__) - set(fixed)
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise RegressionError(f"{path}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}")
    return cls(**fixed, **data)


def load_profile(name):
    path = HERE / "hardware" / f"{name}.yaml"
    if not path.exists():
        known = sorted(p.stem for p in (HERE / "hardware").glob("*.yaml"))
        raise RegressionError(f"no hardware profile '{name}' ({path}); known: {', '.join(known)}")
    profile = build(Profile, path, read_yaml(path, "hardware profile"), name=name)
    if profile.kind not in ("cpu", "gpu"):
        raise RegressionError(f"{path}: kind must be cpu or gpu, not {profile.kind}")
    return profile


def first_comment(path):
    for line in path.read_text().splitlines():
        if line.startswith("#"):
            return line.lstrip("# ").strip()
    return ""


def load_case(path):
    case = build(Case, path, read_yaml(path, "case"), name=path.stem, about=first_comment(path))
    if case.hardware not in ("any", "cpu", "gpu"):
        raise RegressionError(f"{path}: hardware must be any, cpu or gpu, not {case.hardware}")
    if case.resume is not None:
        unknown = set(case.resume) - {"at", "ranks", "set"}
        if "at" not in case.resume or unknown:
            raise RegressionError(f"{path}: resume takes at (a step), and optionally ranks and set")
    return case


def load_cases(names, profile, nodes):
    every = {p.stem: p for p in sorted((HERE / "cases").glob("*.yaml"))}
    for name in names or []:
        if name not in every:
            raise RegressionError(f"no case '{name}' in {HERE / 'cases'}; known: {', '.join(every)}")
    cases = [load_case(every[n]) for n in (names or every)]
    return [c for c in cases if c.hardware in ("any", profile.kind) and c.nodes == nodes]


def tolerance(case, profile, key):
    own = getattr(case, key)
    return getattr(profile, key) if own is None else own


# --- running ---------------------------------------------------------------------------------------

def set_args(settings):
    def text(value):  # YAML's true/false, not Python's True/False
        return str(value).lower() if isinstance(value, bool) else str(value)
    return [a for key, value in settings.items() for a in ("--set", f"{key}={text(value)}")]


def launch_prefix(ranks, nodes, profile, launcher):
    """The command that starts `ranks` processes: launch/loom-run here, srun inside a Slurm job."""
    if launcher == "srun":
        gpus = ["--gpus-per-task=1"] if profile.kind == "gpu" else []
        return ["srun", f"--nodes={nodes}", f"--ntasks={ranks}", "--kill-on-bad-exit=1", *gpus]
    prefix = [str(ROOT / "launch" / "loom-run"), "-n", str(ranks), "--"]
    if profile.share_gpu:  # NCCL lets ranks share a GPU only when each looks like a host of its own
        prefix += ["bash", "-c", 'NCCL_HOSTID=loom-rank-$OMPI_COMM_WORLD_RANK exec "$0" "$@"']
    return prefix


def train_command(args, case, profile, run_dir, ranks, extra_set, resume=None):
    settings = {**profile.set, **case.set, **extra_set, "run.dir": run_dir, "data.path": str(data_path(args)),
                "log.progress": "false"}
    command = [*launch_prefix(ranks, case.nodes, profile, args.launcher), args.loom, "train",
               "--config", str(HERE / "base.yaml"), *set_args(settings)]
    return command + (["--resume", resume] if resume else [])


def gpus_of(case, profile, launcher):
    if profile.kind != "gpu":
        return 0
    return 1 if profile.share_gpu and launcher == "loom-run" else case.ranks


def run(command, log_path):
    with open(log_path, "w") as log:
        return subprocess.run(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT).returncode


def read_steps(run_dir):
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        return []
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [{"step": r["step"], **{k: r[k] for k in STEP_FIGURES}} for r in records if "loss" in r and "step" in r]


def summarize(steps):
    steady = [s["step_time_s"] for s in steps[WARM_STEPS:]] or [s["step_time_s"] for s in steps]
    return {"steps": steps, "median_step_time_s": statistics.median(steady) if steady else 0.0,
            "peak_mem_bytes": max((s["peak_mem_bytes"] for s in steps), default=0)}


def train_case(args, case, profile):
    """Trains the case (and its resumed continuation); returns its summary and the resumed steps."""
    out = args.work / case.name
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    extra = {"checkpoint.interval": case.resume["at"]} if case.resume else {}
    command = train_command(args, case, profile, str(out / "run"), case.ranks, extra)
    if run(command, out / "train.log") != 0:
        raise RegressionError(f"{case.name}: training failed; its output is in {out / 'train.log'}\n  {shlex.join(command)}")
    result = summarize(read_steps(out / "run"))
    if not case.resume:
        return result, None
    at = case.resume["at"]
    layout = Case(case.name, case.about, set={**case.set, **case.resume.get("set", {})}, nodes=case.nodes)
    command = train_command(args, layout, profile, str(out / "resumed"), case.resume.get("ranks", case.ranks), {},
                            resume=str(out / "run" / "checkpoints" / f"step-{at}"))
    if run(command, out / "resumed.log") != 0:
        raise RegressionError(f"{case.name}: the run resumed at step {at} failed; see {out / 'resumed.log'}")
    return result, read_steps(out / "resumed")


def loom_versions(loom):
    text = subprocess.run([loom, "--version"], capture_output=True, text=True, check=True).stdout
    return dict(line.split(": ", 1) for line in text.splitlines() if ": " in line)


def data_path(args):
    return args.work.parent / "data" / "passkey.h5"


def ensure_data(args):
    path = data_path(args)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([args.loom, *DATA_SYNTH, "--out", str(path)], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)


# --- comparing -------------------------------------------------------------------------------------

def relative(a, b):
    if a == b:
        return 0.0
    if not (math.isfinite(a) and math.isfinite(b)):
        return math.inf
    return abs(a - b) / max(abs(b), 1e-300)


def compare_curves(label, got, want, rtol, exact, first_step=1):
    """Loss and grad norm of `got` against `want`, step by step; (largest relative difference, failures)."""
    failures, worst = [], 0.0
    want = [s for s in want if s["step"] >= first_step]
    if [s["step"] for s in got] != [s["step"] for s in want]:
        return math.inf, [f"{label}: steps {[s['step'] for s in got]} where {[s['step'] for s in want]} were expected"]
    for g, w in zip(got, want):
        for figure in ("loss", "grad_norm"):
            diff = relative(g[figure], w[figure])
            worst = max(worst, diff) if figure == "loss" else worst
            if (exact and g[figure] != w[figure]) or diff > rtol:
                rule = "bit for bit" if exact else f"rtol {rtol:g}"
                failures.append(f"{label}: step {g['step']} {figure} {g[figure]!r} differs from {w[figure]!r} "
                                f"by {diff:.3g} (relative), beyond {rule}")
    return worst, failures


def same_platform(golden, versions):
    return golden.get("recorded", {}).get("versions") == versions


def compare_to_golden(case, profile, result, golden, versions):
    """One table row: the case's run against its golden."""
    same = same_platform(golden, versions)
    exact = profile.exact and same
    worst, failures = compare_curves(case.name, result["steps"], golden["steps"], tolerance(case, profile, "rtol"), exact)
    time_ratio = result["median_step_time_s"] / golden["median_step_time_s"] if golden["median_step_time_s"] else math.nan
    memory_ratio = result["peak_mem_bytes"] / golden["peak_mem_bytes"] if golden["peak_mem_bytes"] else math.nan
    slack = tolerance(case, profile, "time_slack")
    # Time and memory measure the libraries as much as Loom (LibTorch 2.11's CUDA build maps twice
    # the memory of 1.13's CPU build on the same run): judged only against goldens of the same ones,
    # reported otherwise.
    if same and time_ratio > slack:
        failures.append(f"{case.name}: median step time {result['median_step_time_s']:.4g} s is {time_ratio:.2f}x the "
                        f"golden {golden['median_step_time_s']:.4g} s, beyond the slack of {slack:g}x")
    if same and not abs(memory_ratio - 1) <= profile.memory_rtol:
        failures.append(f"{case.name}: peak memory {result['peak_mem_bytes']} bytes is {memory_ratio:.3f}x the golden "
                        f"{golden['peak_mem_bytes']}, beyond rtol {profile.memory_rtol:g}")
    rule = "bits" if exact else f"rtol {tolerance(case, profile, 'rtol'):g}"
    return row(case.name, len(result["steps"]), worst, rule, time_ratio, memory_ratio, failures)


def check_resume(case, result, resumed, profile):
    at = case.resume["at"]
    moved = "ranks" in case.resume or "set" in case.resume
    exact = profile.exact and not moved
    rtol = tolerance(case, profile, "parity_rtol" if moved else "rtol")
    label = f"{case.name} resumed at {at}" + (" elsewhere" if moved else "")
    worst, failures = compare_curves(label, resumed, result["steps"], rtol, exact, first_step=at + 1)
    return row(label, len(resumed), worst, "bits" if exact else f"rtol {rtol:g}", None, None, failures)


def check_parity(cases, results, profile):
    """Each parity group's cases against its member with the fewest ranks: step 1 and the whole curve."""
    rows, groups = [], {}
    for case in cases:
        if case.parity and case.name in results:
            groups.setdefault(case.parity, []).append(case)
    for members in groups.values():
        reference = min(members, key=lambda c: (c.ranks, c.name))
        for case in members:
            if case is reference:
                continue
            rtol = max(tolerance(case, profile, "parity_rtol"), tolerance(reference, profile, "parity_rtol"))
            label = f"{case.name} = {reference.name}"
            worst, failures = compare_curves(label, results[case.name]["steps"], results[reference.name]["steps"], rtol, False)
            rows.append(row(label, len(results[case.name]["steps"]), worst, f"rtol {rtol:g}", None, None, failures))
    return rows


def row(name, steps, loss_diff, rule, time_ratio, memory_ratio, failures):
    return {"case": name, "steps": steps, "max_loss_diff": loss_diff, "rule": rule, "time_ratio": time_ratio,
            "memory_ratio": memory_ratio, "passed": not failures, "failures": failures}


def format_table(rows):
    def ratio(x):
        return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.2f}"
    lines = [f"{'case':<34} {'steps':>5} {'max loss diff':>13} {'compared by':>12} {'time':>6} {'memory':>6}  result",
             "-" * 90]
    for r in rows:
        lines.append(f"{r['case']:<34} {r['steps']:>5} {r['max_loss_diff']:>13.3g} {r['rule']:>12} "
                     f"{ratio(r['time_ratio']):>6} {ratio(r['memory_ratio']):>6}  {'pass' if r['passed'] else 'FAIL'}")
    return "\n".join(lines)


# --- goldens ---------------------------------------------------------------------------------------

def golden_path(args, case):
    return args.goldens / args.hardware / f"{case.name}.json"


def read_golden(args, case):
    path = golden_path(args, case)
    if not path.exists():
        raise RegressionError(f"{case.name}: no golden {path}; record it with "
                              f"scripts/regression.sh --hardware {args.hardware} --cases {case.name} --update")
    return json.loads(path.read_text())


def git_commit():
    probe = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True, text=True)
    return probe.stdout.strip() or "unknown"


def write_golden(args, case, result, versions):
    path = golden_path(args, case)
    old = json.loads(path.read_text()) if path.exists() else None
    golden = {"case": case.name, "hardware": args.hardware, **result,
              "recorded": {"host": socket.gethostname(), "date": datetime.date.today().isoformat(),
                           "commit": git_commit(), "versions": versions}}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(golden, indent=1) + "\n")
    if old is None:
        return f"{path}: new"
    worst, failures = compare_curves(case.name, result["steps"], old["steps"], 0.0, True)
    return f"{path}: " + ("losses and grad norms unchanged" if not failures else
                          f"changed (largest loss difference {worst:.3g}; first: {failures[0]})")


# --- the command -----------------------------------------------------------------------------------

def parse_args(argv):
    p = argparse.ArgumentParser(prog="scripts/regression.sh", description=__doc__.splitlines()[0])
    p.add_argument("--hardware", default="cpu", help="the golden folder and hardware profile (default cpu)")
    p.add_argument("--cases", nargs="+", help="case names (default: every case for this hardware)")
    p.add_argument("--update", action="store_true", help="rewrite the goldens of the cases run, saying which changed")
    p.add_argument("--dry-run", action="store_true", help="print what each case would launch, on how many GPUs")
    p.add_argument("--launcher", choices=["loom-run", "srun"], default="loom-run", help="srun inside a Slurm job")
    p.add_argument("--nodes", type=int, default=1, help="run the cases that span this many nodes (default 1)")
    p.add_argument("--loom", default=str(ROOT / "build" / "loom"), help="the loom binary")
    p.add_argument("--goldens", type=Path, help="golden folder (default: tests/regression/golden)")
    p.add_argument("--work", type=Path, default=ROOT / "runs" / "regression", help="where the runs go")
    p.add_argument("--json", type=Path, help="write the table as JSON here (default: WORK/HARDWARE/results.json)")
    args = p.parse_args(argv)
    args.goldens = args.goldens or HERE / "golden"
    args.work = args.work / args.hardware
    args.json = args.json or args.work / "results.json"
    return args


def dry_run(args, cases, profile):
    """Prints each case's launch and checks its config for its world size with `loom train --dry-run`."""
    invalid = []
    for case in cases:
        command = train_command(args, case, profile, str(args.work / case.name / "run"), case.ranks, {})
        print(f"{case.name}: {case.ranks} rank(s) on {case.nodes} node(s), {gpus_of(case, profile, args.launcher)} GPU(s)"
              f"{', resumed at step ' + str(case.resume['at']) if case.resume else ''}\n  {shlex.join(command)}")
        train = command.index("train")
        check = subprocess.run([args.loom, *command[train:], "--dry-run", "--world", str(case.ranks)], cwd=ROOT,
                               capture_output=True, text=True)
        if check.returncode != 0:
            invalid.append(f"{case.name}: {(check.stdout + check.stderr).strip().splitlines()[-1]}")
    if invalid:
        raise RegressionError("configs not valid for their ranks:\n  " + "\n  ".join(invalid))
    print(f"regression: {len(cases)} case(s), each config valid for its ranks")


def main(argv):
    args = parse_args(argv)
    profile = load_profile(args.hardware)
    cases = load_cases(args.cases, profile, args.nodes)
    if not cases:
        raise RegressionError(f"no case of {args.nodes} node(s) applies to {args.hardware} ({profile.kind})")
    if args.dry_run:
        dry_run(args, cases, profile)
        return 0
    goldens = {} if args.update else {c.name: read_golden(args, c) for c in cases}  # a missing one stops before the work
    versions = loom_versions(args.loom)
    ensure_data(args)
    rows, results = [], {}
    for case in cases:
        print(f"regression: {case.name} ({case.ranks} rank(s)): {case.about}", flush=True)
        results[case.name], resumed = train_case(args, case, profile)
        if args.update:
            print("  " + write_golden(args, case, results[case.name], versions))
        else:
            rows.append(compare_to_golden(case, profile, results[case.name], goldens[case.name], versions))
        if resumed is not None:
            rows.append(check_resume(case, results[case.name], resumed, profile))
    rows += check_parity(cases, results, profile)
    print(format_table(rows))
    failures = [f for r in rows for f in r["failures"]]
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"hardware": args.hardware, "versions": versions, "rows": rows}, indent=1) + "\n")
    for failure in failures:
        print("FAIL " + failure)
    print(f"regression: {len(rows) - sum(not r['passed'] for r in rows)} of {len(rows)} rows passed; table in {args.json}")
    return 1 if failures else 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except RegressionError as e:
        print(f"regression: error: {e}", file=sys.stderr)
        sys.exit(2)
