"""frame_embeddings keeps only the fold checkpoints its last materialisation references."""

from types import SimpleNamespace

from assets.features import FOLD_MODELS, prune_fold_models


def test_a_full_build_prunes_every_fold_checkpoint_the_last_state_does_not_reference(home):
    from lake.storage import LensStorage

    storage = LensStorage()
    assert prune_fold_models(storage, None) == 0  # nothing stored yet: nothing to do
    uris = [storage.uri(*FOLD_MODELS, f"f-{i:012d}.safetensors") for i in range(4)]
    for uri in uris:
        storage.write_bytes(uri, b"weights")
    last = SimpleNamespace(
        models=[{"uri": uris[1], "sha256": "x"}, {"uri": uris[3], "sha256": "y"}]
    )
    assert prune_fold_models(storage, last) == 2
    assert [f.uri for f in storage.list_files(*FOLD_MODELS)] == [uris[1], uris[3]]
    assert prune_fold_models(storage, last) == 0  # idempotent
    assert prune_fold_models(storage, None) == 2  # no state (refresh from nothing): all go
    assert storage.list_files(*FOLD_MODELS) == []
