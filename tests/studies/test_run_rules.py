"""The engine's rules on what counts as the same run, through real jobs: the quickstart's DCGAN and
study 2's PGGAN (whose growth plan depends on the run's length) and DCGAN."""

import pytest

from medgan.config import load_params
from medgan.studies import build_job, run_job
from medgan.train import max_weight_difference

JOBS = {  # (notebook, model, the section holding its steps)
    "quickstart": ("00_quickstart", "dcgan", "train"),
    "ct_dcgan": ("02_ct_fidelity_diversity", "dcgan", "dcgan"),
    "ct_pggan": ("02_ct_fidelity_diversity", "pggan", "pggan"),
}


def _run(case, tmp_path, steps, **overrides):
    notebook, model, section = JOBS[case]
    P = load_params(notebook, "smoke", {f"{section}.steps": steps, **overrides})
    job = build_job(notebook, model, P)
    return job, run_job(job, tmp_path / model, progress=False)


@pytest.fixture(autouse=True)
def _runs_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDGAN_RUNS_DIR", str(tmp_path / "runs"))


@pytest.mark.parametrize("case", ["quickstart", "ct_dcgan"])
def test_a_changed_seed_never_reuses_the_model(case, tmp_path):
    _, first = _run(case, tmp_path, 4)
    _, other = _run(case, tmp_path, 4, seed=1)
    assert other.trained_steps == 4 and other.run_dir != first.run_dir
    _, again = _run(case, tmp_path, 4)
    assert again.trained_steps == 0 and again.run_dir == first.run_dir


@pytest.mark.parametrize("case", ["quickstart", "ct_dcgan"])
def test_a_changed_model_setting_keeps_both_models(case, tmp_path):
    notebook, _, section = JOBS[case]
    width = "model.g_width" if case == "quickstart" else "dcgan.model.g_width"
    _, first = _run(case, tmp_path, 4)
    _, wider = _run(case, tmp_path, 4, **{width: 16})
    assert wider.trained_steps == 4 and wider.run_dir != first.run_dir
    _, back = _run(case, tmp_path, 4)
    assert back.trained_steps == 0 and back.run_dir == first.run_dir


@pytest.mark.parametrize("case", ["quickstart", "ct_dcgan"])
def test_more_steps_continue_and_equal_a_run_from_scratch(case, tmp_path):
    _run(case, tmp_path / "a", 4)
    continued_job, continued = _run(case, tmp_path / "a", 8)
    assert continued.trained_steps == 4
    scratch_job, _ = _run(case, tmp_path / "b", 8)
    assert max_weight_difference(continued_job.step, scratch_job.step) == 0.0


@pytest.mark.parametrize("case", ["quickstart", "ct_dcgan"])
def test_fewer_steps_never_return_a_longer_trained_model(case, tmp_path):
    _, long = _run(case, tmp_path / "a", 8)
    short_job, short = _run(case, tmp_path / "a", 5)
    assert short.step == 5 and short.trained_steps == 5 and short.run_dir != long.run_dir
    scratch_job, _ = _run(case, tmp_path / "b", 5)
    assert max_weight_difference(short_job.step, scratch_job.step) == 0.0
    # The longer run's final checkpoint is still there: asking for its length reloads it.
    _, again = _run(case, tmp_path / "a", 8)
    assert again.trained_steps == 0 and again.run_dir == long.run_dir


def test_a_schedule_over_the_total_trains_each_length_in_its_own_folder(tmp_path):
    _, short = _run("ct_pggan", tmp_path, 6)
    job, longer = _run("ct_pggan", tmp_path, 12)
    assert longer.trained_steps == 12 and longer.run_dir != short.run_dir
    _, back = _run("ct_pggan", tmp_path, 6)
    assert back.trained_steps == 0 and back.run_dir == short.run_dir


def test_the_quickstarts_interrupted_copy_resumes_to_the_same_weights(tmp_path):
    from medgan.studies.quickstart.resume import interrupted_copy

    P = load_params("00_quickstart", "smoke", {"train.steps": 12, "train.checkpoint_every": 4})
    job = build_job("00_quickstart", "dcgan", P)
    done = run_job(job, tmp_path / "dcgan", progress=False)
    for _ in range(2):  # a second demonstration replaces the first copy and resumes again
        stopped_at = interrupted_copy(done.run_dir, tmp_path / "resume_demo")
        assert stopped_at == 8  # the newest checkpoint before the end (two are kept: 8 and 12)
        resumed = build_job("00_quickstart", "dcgan", P)
        again = run_job(resumed, tmp_path / "resume_demo", progress=False)
        assert (again.step, again.trained_steps) == (12, 4)
        assert max_weight_difference(job.step, resumed.step) == 0.0
    assert sorted(p.name for p in (done.run_dir / "checkpoints").glob("step_*.pt")) == [
        "step_00000008.pt", "step_00000012.pt"]  # the original run folder is untouched
