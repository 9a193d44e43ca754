"""trained_model's launchpad knobs that resolve against the data: members and lighting (auto)."""

import pytest
from pydantic import ValidationError

from assets.models import TrainingConfig, _train_config
from training.policy import (
    ENSEMBLE_BELOW,
    ENSEMBLE_MEMBERS,
    LIGHTING,
    LIGHTING_FROM,
    lighting_for,
    members_for,
)
from training.preprocess import Crop, PreprocessSpec


def _cfg(n_train=500, spec=None, **knobs):
    return _train_config(None, TrainingConfig(**knobs), spec or PreprocessSpec(), n_train)


def test_auto_members_ensemble_small_training_splits_only():
    assert _cfg(ENSEMBLE_BELOW - 1).members == ENSEMBLE_MEMBERS
    assert _cfg(ENSEMBLE_BELOW).members == 1
    assert _cfg(ENSEMBLE_BELOW - 1, members=1).members == 1  # asked for: as asked
    assert _cfg(5000, members=2).members == 2
    with pytest.raises(ValidationError):
        TrainingConfig(members=-1)


def test_auto_lighting_jitters_cropped_cameras_and_leaves_whole_frames_alone():
    cropped = _cfg()
    assert cropped.brightness == cropped.contrast == LIGHTING
    assert cropped.augment_config().brightness == LIGHTING
    whole = PreprocessSpec(cameras={"cam2": Crop(policy="full")})
    assert _cfg(spec=whole).brightness == 0.0
    assert _cfg(spec=whole, lighting=0.2).contrast == 0.2  # asked for: as asked
    assert _cfg(lighting=0.0).brightness == 0.0
    # a tiny split: the few steps it trains are not enough to learn through the jitter
    assert _cfg(LIGHTING_FROM - 1).brightness == 0.0
    assert _cfg(LIGHTING_FROM - 1, lighting=0.3).brightness == 0.3
    with pytest.raises(ValidationError):
        TrainingConfig(lighting=1.5)


def test_the_policy_functions_keep_what_is_asked_and_refuse_a_negative_count():
    assert members_for(0, n_train=10) == ENSEMBLE_MEMBERS and members_for(2, n_train=10) == 2
    with pytest.raises(ValueError, match="members=-1"):
        members_for(-1, n_train=10)
    assert lighting_for(None, n_train=LIGHTING_FROM, whole_frames=False) == LIGHTING
    assert lighting_for(None, n_train=LIGHTING_FROM, whole_frames=True) == 0.0
    assert lighting_for(0.1, n_train=1, whole_frames=True) == 0.1
