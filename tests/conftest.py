import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("MPLBACKEND", "Agg")

# The smoke book and the stage-by-stage rerun of its run take about half the suite's time, and
# pytest-xdist keeps a file on one worker (`--dist loadfile`, in collection order): that file
# starts first, so the other workers take every other file meanwhile.
LONGEST_FILE = "test_pipeline.py"


def pytest_collection_modifyitems(session, config, items):
    items.sort(key=lambda item: item.path.name != LONGEST_FILE)  # a stable sort: the rest keep their order
