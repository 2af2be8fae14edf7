"""The training parameters a user sets in the dock widget, turned into core configs."""

from __future__ import annotations

from qtpy.QtWidgets import QCheckBox, QDoubleSpinBox, QFormLayout, QGroupBox, QSpinBox, QVBoxLayout, QWidget

from ._qt_parts import combo, spin
from .core.config import DEFAULT_PRESET, DEVICES, PRESETS, Preset, resolve


class TrainingOptions(QWidget):
    """Preset, time budget, device and Dice weight, with advanced settings folded away."""

    def __init__(self, parent=None):
        super().__init__(parent)
        form = QFormLayout(self)
        form.setContentsMargins(0, 0, 0, 0)
        self.preset_combo = combo(PRESETS, DEFAULT_PRESET)
        self.time_spin = spin(QDoubleSpinBox(), 5, 3600, 60, " s")
        self.device_combo = combo(DEVICES, "auto")
        self.alpha_spin = spin(QDoubleSpinBox(), 0, 1, PRESETS[DEFAULT_PRESET].train.dice_weight)
        self.alpha_spin.setSingleStep(0.1)
        tips = (("Model: fast (default) for a CPU, paper for a GPU, plain to compare", self.preset_combo),
                ("Training stops after this many seconds of training; previews and predictions come on top "
                 "(or after the iterations under Advanced)", self.time_spin),
                ("Where training runs: auto picks a GPU when there is one", self.device_combo),
                ("Loss = α·Dice + (1−α)·cross-entropy; raise it for small structures", self.alpha_spin))
        _set_tips(tips)
        for label, widget in (("Preset", self.preset_combo), ("Time budget", self.time_spin),
                              ("Device", self.device_combo), ("Dice weight α", self.alpha_spin)):
            form.addRow(label, widget)
        form.addRow(self._advanced())

    def _advanced(self) -> QGroupBox:
        box = QGroupBox("Advanced")
        box.setCheckable(True)
        box.setChecked(False)
        inner, form = QWidget(), QFormLayout()
        self.iterations_spin = spin(QSpinBox(), 0, 1_000_000, 0, " (0 = time only)")
        self.seed_spin = spin(QSpinBox(), 0, 2**31 - 1, 0)
        self.preview_spin = spin(QDoubleSpinBox(), 0.5, 60, 3, " s")
        self.scratch_check = QCheckBox("Start from scratch (forget the current model)")
        self.predict_check = QCheckBox("Predict the whole image after training")
        self.predict_check.setChecked(True)
        self.probability_check = QCheckBox("Probability layer")
        self.uncertainty_check = QCheckBox("Uncertainty (entropy) layer")
        tips = (("Stop after this many iterations too (0: the time budget only)", self.iterations_spin),
                ("Same seed, same result on one machine", self.seed_spin),
                ("How often the plane on screen is predicted while training", self.preview_spin),
                ("Train a new model instead of continuing the current one", self.scratch_check),
                ("After training, predict the whole image into the prediction layer", self.predict_check),
                ("Also show the class probabilities (0..255) as an image layer", self.probability_check),
                ("Also show how unsure the model is (entropy): bright = undecided", self.uncertainty_check))
        _set_tips(tips)
        for label, widget in (("Iterations", self.iterations_spin), ("Seed", self.seed_spin),
                              ("Preview every", self.preview_spin)):
            form.addRow(label, widget)
        for check in (self.scratch_check, self.predict_check, self.probability_check,
                      self.uncertainty_check):
            form.addRow(check)
        inner.setLayout(form)
        inner.setVisible(False)
        box.toggled.connect(inner.setVisible)
        QVBoxLayout(box).addWidget(inner)
        return box

    def settings(self) -> Preset:
        """The chosen preset with the user's budget, α, seed and device."""
        return resolve(self.preset_combo.currentText(), max_time=self.time_spin.value(),
                       iterations=self.iterations_spin.value() or None, dice_weight=self.alpha_spin.value(),
                       seed=self.seed_spin.value(), device=self.device_combo.currentText())

    def infer_overrides(self) -> dict:
        """What the user chose for predictions with any model (the device)."""
        return {"device": self.device_combo.currentText()}


def _set_tips(pairs) -> None:
    for tip, widget in pairs:
        widget.setToolTip(tip)
