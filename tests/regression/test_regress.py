#!/usr/bin/env python3
"""The regression harness itself: a golden beyond its tolerance fails and says where, --update
round-trips, a missing golden is an error, bad case files are refused, and the dry run of the
Slurm job validates every case. LOOM_BINARY names the loom to run (default build/loom)."""
import copy
import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))
import regress  # noqa: E402

LOOM = os.environ.get("LOOM_BINARY", str(ROOT / "build" / "loom"))


def harness(*args):
    return subprocess.run([sys.executable, str(HERE / "regress.py"), "--loom", LOOM, *args], cwd=ROOT,
                          capture_output=True, text=True)


class Comparison(unittest.TestCase):
    """compare_to_golden on the committed golden of `full` and copies of it with one figure moved."""

    def setUp(self):
        self.golden = json.loads((HERE / "golden" / "cpu" / "full.json").read_text())
        self.case = regress.load_case(HERE / "cases" / "full.yaml")
        self.profile = regress.load_profile("cpu")
        self.versions = self.golden["recorded"]["versions"]

    def moved(self, step, figure, factor):
        result = copy.deepcopy({k: self.golden[k] for k in ("steps", "median_step_time_s", "peak_mem_bytes")})
        if step is None:
            result[figure] *= factor
        else:
            result["steps"][step - 1][figure] *= factor
        return result

    def compare(self, result, versions=None):
        return regress.compare_to_golden(self.case, self.profile, result, self.golden, versions or self.versions)

    def test_the_golden_itself_passes_bit_for_bit(self):
        r = self.compare(self.moved(None, "peak_mem_bytes", 1.0))
        self.assertTrue(r["passed"], r["failures"])
        self.assertEqual(r["rule"], "bits")

    def test_a_loss_beyond_rtol_fails_naming_case_step_and_figure(self):
        r = self.compare(self.moved(7, "loss", 1 + 1e-6), versions={"cpu": "another"})
        self.assertFalse(r["passed"])
        self.assertIn("full: step 7 loss", r["failures"][0])
        self.assertIn("rtol 1e-09", r["failures"][0])

    def test_one_ulp_fails_on_the_same_platform_and_passes_within_rtol_elsewhere(self):
        result = self.moved(3, "grad_norm", 1 + 2.3e-16)
        self.assertNotEqual(result["steps"][2]["grad_norm"], self.golden["steps"][2]["grad_norm"])
        same = self.compare(result)
        self.assertFalse(same["passed"])
        self.assertIn("full: step 3 grad_norm", same["failures"][0])
        self.assertIn("bit for bit", same["failures"][0])
        self.assertTrue(self.compare(result, versions={"cpu": "another"})["passed"])

    def test_memory_beyond_its_rtol_fails_and_within_passes(self):
        self.assertTrue(self.compare(self.moved(None, "peak_mem_bytes", 1.07))["passed"])
        r = self.compare(self.moved(None, "peak_mem_bytes", 1.10))
        self.assertFalse(r["passed"])
        self.assertIn("full: peak memory", r["failures"][0])

    def test_time_fails_only_beyond_the_slack(self):
        self.assertTrue(self.compare(self.moved(None, "median_step_time_s", 2.5))["passed"])
        r = self.compare(self.moved(None, "median_step_time_s", 3.5))
        self.assertFalse(r["passed"])
        self.assertIn("full: median step time", r["failures"][0])

    def test_time_and_memory_are_only_reported_against_other_libraries(self):
        result = self.moved(None, "peak_mem_bytes", 2.0)
        result["median_step_time_s"] *= 4
        r = self.compare(result, versions={"cpu": "another"})
        self.assertTrue(r["passed"], r["failures"])
        self.assertAlmostEqual(r["memory_ratio"], 2.0)
        self.assertAlmostEqual(r["time_ratio"], 4.0)
        self.assertFalse(self.compare(result)["passed"])

    def test_a_missing_step_fails(self):
        result = self.moved(None, "peak_mem_bytes", 1.0)
        del result["steps"][-1]
        self.assertFalse(self.compare(result)["passed"])


class Cases(unittest.TestCase):
    def test_an_unknown_key_is_refused_naming_file_and_key(self):
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "bad.yaml"
            path.write_text("ranks: 2\nparity_group: layouts\n")
            with self.assertRaisesRegex(regress.RegressionError, "bad.yaml: unknown key.*parity_group"):
                regress.load_case(path)

    def test_an_unknown_case_or_hardware_is_refused(self):
        r = harness("--cases", "no-such-case")
        self.assertEqual(r.returncode, 2)
        self.assertIn("no case 'no-such-case'", r.stderr)
        r = harness("--hardware", "tpu-v9")
        self.assertEqual(r.returncode, 2)
        self.assertIn("no hardware profile 'tpu-v9'", r.stderr)

    def test_every_cpu_case_has_a_golden_and_fits_four_ranks(self):
        for case in regress.load_cases(None, regress.load_profile("cpu"), 1):
            self.assertTrue((HERE / "golden" / "cpu" / f"{case.name}.json").exists(), case.name)
            self.assertLessEqual(case.ranks, 4, case.name)


class EndToEnd(unittest.TestCase):
    """The real harness training the real case `full` against goldens in a scratch folder."""

    def setUp(self):
        self.tmp = Path(tempfile.mkdtemp())
        self.goldens = self.tmp / "golden"
        self.common = ["--cases", "full", "--goldens", str(self.goldens), "--work", str(self.tmp / "work")]

    def tearDown(self):
        shutil.rmtree(self.tmp)

    def test_missing_golden_is_an_error_before_any_training(self):
        r = harness(*self.common)
        self.assertEqual(r.returncode, 2)
        self.assertIn("full: no golden", r.stderr)
        self.assertIn("--update", r.stderr)
        self.assertFalse((self.tmp / "work" / "cpu" / "full").exists())

    def test_update_round_trips_and_a_moved_golden_fails(self):
        first = harness(*self.common, "--update")
        self.assertEqual(first.returncode, 0, first.stdout + first.stderr)
        self.assertIn("full.json: new", first.stdout)
        again = harness(*self.common)
        self.assertEqual(again.returncode, 0, again.stdout + again.stderr)
        self.assertIn("full resumed at 10", again.stdout)
        table = json.loads((self.tmp / "work" / "cpu" / "results.json").read_text())
        self.assertTrue(all(r["passed"] for r in table["rows"]))
        self.assertEqual(harness(*self.common, "--update").stdout.count("unchanged"), 1)

        path = self.goldens / "cpu" / "full.json"
        golden = json.loads(path.read_text())
        golden["steps"][6]["loss"] *= 1.001
        path.write_text(json.dumps(golden))
        moved = harness(*self.common)
        self.assertEqual(moved.returncode, 1)
        self.assertIn("FAIL full: step 7 loss", moved.stdout)
        changed = harness(*self.common, "--update")
        self.assertIn("full.json: changed", changed.stdout)
        self.assertIn("step 7 loss", changed.stdout)


class ClusterJobs(unittest.TestCase):
    def test_the_slurm_job_dry_run_lists_and_validates_every_gpu_case(self):
        for nodes, expected in ((1, "gpu-dp2-sp2-tp2: 8 rank(s) on 1 node(s), 8 GPU(s)"),
                                (2, "gpu-2nodes-zeppelin: 16 rank(s) on 2 node(s), 16 GPU(s)")):
            env = {**os.environ, "SLURM_JOB_NUM_NODES": str(nodes), "LOOM": LOOM}
            r = subprocess.run(["bash", str(ROOT / "launch" / "slurm" / "regression.sbatch"), "--dry-run"], cwd=ROOT,
                               env=env, capture_output=True, text=True)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            self.assertIn(expected, r.stdout)
            self.assertIn(f"srun --nodes={nodes} --ntasks={8 * nodes} --kill-on-bad-exit=1 --gpus-per-task=1", r.stdout)
            self.assertIn("each config valid for its ranks", r.stdout)

    def test_the_workflow_submits_the_slurm_job_and_uploads_the_table(self):
        import yaml
        workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "gpu-regression.yml").read_text())
        steps = [s for job in workflow["jobs"].values() for s in job["steps"]]
        runs = "\n".join(s.get("run", "") for s in steps)
        self.assertIn("launch/slurm/regression.sbatch", runs)
        self.assertTrue(any(s.get("uses", "").startswith("actions/upload-artifact") for s in steps))
        self.assertIn("self-hosted", workflow["jobs"]["one-node"]["runs-on"])


if __name__ == "__main__":
    unittest.main()
