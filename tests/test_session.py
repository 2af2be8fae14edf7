"""The dock widget's memory, without Qt or a display: model, layers by identity, next plane."""

import numpy as np
import pytest

from napari_sparseseg._session import Session, plane_hint


class Layer:
    """Stands in for a napari layer: the session only compares identities and reads the name."""

    def __init__(self, name):
        self.name = name


def test_layers_are_tracked_by_identity_through_renames_and_removals():
    session, image, other = Session(), Layer("scan"), Layer("scan")  # two images of the same name
    prediction = Layer("scan prediction")
    session.keep(image, "prediction", prediction)
    prediction.name, image.name = "my result", "renamed scan"
    assert session.layer(image, "prediction") is prediction and session.prediction(image) is prediction
    assert session.layer(other, "prediction") is None and session.own(prediction) and not session.own(image)
    with pytest.raises(ValueError, match="no prediction of 'scan' yet"):
        session.prediction(other)

    newer = Layer("scan prediction")
    session.keep(image, "prediction", newer)  # replaces, does not pile up
    assert session.layer(image, "prediction") is newer and not session.own(prediction)
    session.forget(newer)  # the user deleted it
    assert session.layer(image, "prediction") is None
    session.keep(image, "uncertainty", Layer("u"))
    session.forget(image)  # the image itself was deleted: its layers are no longer the plugin's to update
    assert session.layer(image, "uncertainty") is None
    with pytest.raises(ValueError, match="Unknown layer kind"):
        session.keep(image, "mask", Layer("m"))


def test_training_continues_from_the_model_unless_it_knows_fewer_classes():
    session = Session()
    assert session.start_from(3, scratch=False) == (None, "")
    session.set_model(b"model", ("background", "liver"))
    assert session.start_from(2, scratch=False) == (b"model", "")
    assert session.start_from(2, scratch=True) == (None, "")
    model, why = session.start_from(3, scratch=False)
    assert model is None and "3 classes are painted but the model knows 2" in why


def test_next_plane_needs_a_prediction_of_this_grid_and_an_unpainted_plane():
    session, annotation = Session(), np.zeros((4, 6, 5), np.uint8)
    with pytest.raises(ValueError, match="Predict the image first"):
        session.next_plane(annotation)
    session.uncertainty = np.zeros((4, 6, 5), np.uint8)
    session.uncertainty[:, 2] = 200  # the model is unsure on the xz plane y = 2
    axis, index, score = session.next_plane(annotation)
    assert (axis, index) == (1, 2) and score > 0
    assert plane_hint(axis, index, score).startswith("Paint xz plane y = 2")
    session.uncertainty = np.zeros((3, 3, 3), np.uint8)
    with pytest.raises(ValueError, match="Predict the image first"):
        session.next_plane(annotation)


def test_undo_restores_the_model_before_the_last_round_and_where_it_lives():
    session = Session()
    assert session.where() == "No model yet." and not session.can_undo()
    session.trained(b"round 1", ("background", "cell"))
    assert not session.can_undo()  # nothing before the first round
    session.model_file = "/data/round1.pt"
    session.trained(b"round 2", ("background", "cell", "nucleus"))
    assert session.where() == "Model in memory only (not saved)." and session.can_undo()
    session.undo()
    assert (session.model, session.model_classes) == (b"round 1", ("background", "cell"))
    assert session.where() == "Model saved in /data/round1.pt." and not session.can_undo()
    with pytest.raises(ValueError, match="no training round to undo"):
        session.undo()
    session.trained(b"round 2", ("background", "cell"))
    session.set_model(b"loaded", ("background", "cell"), "/m.pt")
    assert not session.can_undo()  # loading a model is not a training round


def test_an_unsaved_model_is_kept_once_and_a_saved_one_never(tmp_path, monkeypatch):
    from napari_sparseseg._session import recovery_folder

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert recovery_folder() == tmp_path / "napari-sparseseg" / "unsaved-models"
    session = Session()
    assert session.keep_unsaved() is None  # no model yet
    session.trained(b"weights", ("background", "cell"))
    path = session.keep_unsaved()
    assert path.parent == recovery_folder() and path.read_bytes() == b"weights"
    assert session.keep_unsaved() is None and session.where() == f"Model saved in {path}."
