"""The image-pass budget of a run, against counts worked out by hand from the configuration."""

import pytest

from cxrdrift import config as cfg
from cxrdrift import workload


def demo_like(**overrides) -> cfg.RunConfig:
    values = dict(synth_train=1000, synth_val=100, synth_test=300, pretrain_images=4800, pretrain_epochs=2,
                  pretrain_bn_images=800, pretrain_bn_epochs=1, epochs_ft=2, late_epoch=12, finetune_images=600,
                  replicate_seeds=(1, 2), cam_epochs="compared")
    return cfg.profile("demo", **{**values, **overrides})


def test_passes_of_a_three_seed_demo_by_hand():
    passes = workload.image_passes(demo_like(), mapped=200)
    dense = passes[passes["arch"] == "DenseNet201"].set_index(["seed", "step"])
    # pre-training: 2 x 4,800 training steps; BatchNorm over 800; 1,200 held-out source images scored
    assert tuple(dense.loc[("main", "pre-training"), ["forward", "backward"]]) == (9600 + 800 + 1200, 9600)
    assert dense.loc[("main", "frozen features"), "forward"] == 1400
    assert tuple(dense.loc[("main", "fine-tuning"), ["forward", "backward"]]) == (2 * (600 + 400), 2 * 600)
    assert dense.loc[("main", "maps"), "total"] == 2 * 2 * 200
    assert ("1", "frozen features") not in dense.index  # replicates reuse the main run's features
    assert dense.loc[("2", "maps"), "total"] == 2 * 2 * 200  # replicates map the main run's compared images
    assert dense.loc[("main", "randomization ceiling"), "total"] == 400
    totals = workload.totals(passes)
    assert totals["DenseNet201"] == 21200 + 1400 + 3200 + 800 + 2 * (3200 + 800) + 400 == 35000
    assert totals["ResNet50V2"] == 35000 + 2 * (2 * 300 + 256)  # chapter 09 audits it
    assert totals["InceptionV3"] == 35000


def test_cached_pretraining_random_weights_and_uncached_features():
    cached = workload.totals(workload.image_passes(demo_like(), mapped=200, pretraining=False))
    assert cached["DenseNet201"] == 35000 - 21200
    random_start = workload.image_passes(demo_like(weights="none"), mapped=200)
    assert "pre-training" not in set(random_start["step"])
    assert len(random_start.query("step == 'frozen features'")) == 3 * 3  # each seed its own backbone
    plain = workload.image_passes(demo_like(cache_frozen_features=False, replicate_seeds=()), mapped=200)
    epochs = plain.query("step == 'frozen epochs' and arch == 'InceptionV3'")
    assert epochs["forward"].item() == 10 * 1400 and epochs["backward"].item() == 0


@pytest.mark.parametrize("images, expected", [(0, 1000), (250, 250)])
def test_finetune_images_set_the_fine_tuning_passes(images, expected):
    passes = workload.image_passes(demo_like(finetune_images=images, replicate_seeds=()), audited=None)
    step = passes.query("step == 'fine-tuning' and arch == 'DenseNet201'")
    assert step["backward"].item() == 2 * expected and step["forward"].item() == 2 * (expected + 400)
