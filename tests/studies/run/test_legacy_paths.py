"""Pickled Ray Tune state of earlier versions names modules that have moved: it still loads."""

import pickle
import subprocess
import sys


def test_a_tracker_pickled_under_store_mlflow_loads_after_the_alias():
    # A fresh interpreter: nothing imported yet, as in `normstudy resume`.
    code = (
        "import pickle\n"
        "from studies.run.legacy import alias_renamed_modules\n"
        "from studies.store.tracker import StudyTracker\n"
        "alias_renamed_modules()\n"
        "assert pickle.loads(b'cstudies.store.mlflow\\nStudyTracker\\n.') is StudyTracker\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_without_the_alias_the_old_path_is_gone():
    code = "import pickle; pickle.loads(b'cstudies.store.mlflow\\nStudyTracker\\n.')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode != 0 and "studies.store.mlflow" in out.stderr


def test_the_flat_modules_of_normstudy_0_1_still_import():
    from studies.store.tracker import StudyTracker
    from studies.trial.trainable import tune_trainable

    assert pickle.loads(b"cstudies.tracking\nStudyTracker\n.") is StudyTracker
    assert pickle.loads(b"cstudies.trainable\ntune_trainable\n.") is tune_trainable
