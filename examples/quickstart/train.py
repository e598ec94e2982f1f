"""The quickstart's trial function: a small neural network on scikit-learn's digits.

``objective(trial)`` trains a one-hidden-layer network (ReLU, softmax) with Adam on minibatches
of 128 images of the 8x8 handwritten digits that ship with scikit-learn (1,797 images, no
download), one epoch at a time, and reports after each epoch::

    trial.report({"val_loss": ..., "val_accuracy": ..., "epoch": e}, step=e)   # e = 1, 2, ...

``val_loss`` is the log-loss on a fixed, stratified validation split (25 %, the same for every
trial). The learning rate follows a cosine from ``learning_rate`` at the first epoch down to
zero after the last one. ``trial.seed`` seeds the weight initialisation only: the minibatches
come in the same order for every trial and every seed, so configurations are compared on the
same data stream and one seed and one configuration give the same numbers on every run.

After each report the function asks ``trial.should_stop()`` and returns at once when the
engine has stopped the trial (hyperband / successive halving): it returns what it has.

It returns the **best** epoch, as early stopping with a checkpoint would keep it:
``val_loss`` is the lowest validation loss over the epochs run, ``val_accuracy`` the accuracy
at that epoch, ``best_epoch`` its number and ``epochs`` how many epochs were trained. A
network that starts to overfit late is therefore judged by its best point, which is also what
W&B's own bayes search uses for a finished run (the best value in its history).

The parameters are ``learning_rate`` (Adam's step size at the first epoch), ``hidden_units`` and
``weight_decay`` (L2); an optional ``epochs`` (e.g. a constant ``epochs: {value: 27}`` in the
spec) changes the length of training, and of the cosine, from its default of 50.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any

import numpy as np

# With hyperband min_iter 6, eta 3 the rungs fall at epochs 6 and 18; the next band, 54, lies
# past the end, so no trial is stopped after its last epoch, when stopping saves nothing.
EPOCHS = 50
BATCH_SIZE = 128
BETAS = (0.9, 0.999)  # Adam's defaults
EPSILON = 1e-8
VALIDATION_FRACTION = 0.25
SPLIT_SEED = 0  # the split never depends on the trial's seed: every trial sees the same data
ORDER_SEED = 0  # nor does the minibatch order: only the initial weights come from trial.seed

Arrays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


@lru_cache(maxsize=1)
def load_data() -> Arrays:
    """The digits, split once (stratified), pixel intensities 0..16 scaled to [0, 1].

    Not standardised per pixel: a border pixel that is almost always blank would get a tiny
    standard deviation, and a validation image that inks it would reach 80+ sigmas, which
    makes the validation log-loss hinge on a few wildly over-confident predictions.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    x_train, x_val, y_train, y_val = train_test_split(
        x / 16.0, y, test_size=VALIDATION_FRACTION, stratify=y, random_state=SPLIT_SEED
    )
    return x_train, y_train, x_val, y_val


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=1, keepdims=True)
    return z


def learning_rate_at(epoch: int, epochs: int, peak: float) -> float:
    """Cosine annealing: ``peak`` during epoch 1, falling to near zero in the last epoch."""
    return peak * 0.5 * (1.0 + math.cos(math.pi * (epoch - 1) / epochs))


class MLP:
    """64 -> hidden (ReLU) -> 10 (softmax), trained by Adam with an L2 penalty."""

    def __init__(self, n_in: int, hidden: int, n_out: int, rng: np.random.Generator) -> None:
        # He initialisation for the ReLU layer, Glorot for the output layer.
        self.w1 = rng.normal(0.0, np.sqrt(2.0 / n_in), (n_in, hidden))
        self.b1 = np.zeros(hidden)
        self.w2 = rng.normal(0.0, np.sqrt(2.0 / (hidden + n_out)), (hidden, n_out))
        self.b2 = np.zeros(n_out)
        self._mean = [np.zeros_like(p) for p in self.parameters]  # Adam's moment estimates
        self._square = [np.zeros_like(p) for p in self.parameters]
        self._steps = 0

    @property
    def parameters(self) -> list[np.ndarray]:
        return [self.w1, self.b1, self.w2, self.b2]

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        return _softmax(np.maximum(x @ self.w1 + self.b1, 0.0) @ self.w2 + self.b2)

    def adam_step(self, x: np.ndarray, y: np.ndarray, lr: float, alpha: float) -> None:
        hidden = np.maximum(x @ self.w1 + self.b1, 0.0)
        grad_logits = _softmax(hidden @ self.w2 + self.b2)
        grad_logits[np.arange(len(y)), y] -= 1.0
        grad_logits /= len(y)
        grad_hidden = (grad_logits @ self.w2.T) * (hidden > 0)
        grads = [
            x.T @ grad_hidden + alpha * self.w1,
            grad_hidden.sum(axis=0),
            hidden.T @ grad_logits + alpha * self.w2,
            grad_logits.sum(axis=0),
        ]
        self._steps += 1
        beta1, beta2 = BETAS
        step = lr * math.sqrt(1.0 - beta2**self._steps) / (1.0 - beta1**self._steps)
        for param, mean, square, grad in zip(
            self.parameters, self._mean, self._square, grads, strict=True
        ):
            mean *= beta1
            mean += (1.0 - beta1) * grad
            square *= beta2
            square += (1.0 - beta2) * grad * grad
            param -= step * mean / (np.sqrt(square) + EPSILON)


def evaluate(model: MLP, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Log-loss (natural log, probabilities clipped at 1e-15) and accuracy.

    A network whose weights diverged (too high a learning rate) predicts NaN: it scores as if
    it gave every true class the smallest probability, -log(1e-15) = 34.5, and accuracy 0.
    """
    proba = np.nan_to_num(model.predict_proba(x), nan=0.0)
    picked = np.clip(proba[np.arange(len(y)), y], 1e-15, 1.0)
    hits = (proba.argmax(axis=1) == y) & (proba.max(axis=1) > 0)
    return float(-np.mean(np.log(picked))), float(np.mean(hits))


def objective(trial: Any) -> dict[str, float]:
    """Train with ``trial.params``; report every epoch; stop when the engine says so."""
    params = trial.params
    peak = float(params["learning_rate"])
    hidden = int(params["hidden_units"])
    alpha = float(params["weight_decay"])
    epochs = int(params.get("epochs", EPOCHS))

    x_train, y_train, x_val, y_val = load_data()
    model = MLP(x_train.shape[1], hidden, 10, np.random.default_rng(trial.seed))
    order = np.random.default_rng(ORDER_SEED)

    best = {"val_loss": float("inf"), "val_accuracy": 0.0, "best_epoch": 0}
    epoch = 0
    with np.errstate(over="ignore", invalid="ignore"):
        for epoch in range(1, epochs + 1):
            lr = learning_rate_at(epoch, epochs, peak)
            shuffled = order.permutation(len(y_train))
            for start in range(0, len(shuffled), BATCH_SIZE):
                batch = shuffled[start : start + BATCH_SIZE]
                model.adam_step(x_train[batch], y_train[batch], lr, alpha)
            val_loss, val_accuracy = evaluate(model, x_val, y_val)
            trial.report(
                {"val_loss": val_loss, "val_accuracy": val_accuracy, "epoch": epoch}, step=epoch
            )
            if val_loss < best["val_loss"]:
                best = {"val_loss": val_loss, "val_accuracy": val_accuracy, "best_epoch": epoch}
            if trial.should_stop():
                break
    return {**best, "epochs": epoch}
