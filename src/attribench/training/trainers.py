"""Trainer registry: how an experiment's attributor is fitted. name -> fn(index, spec, out_dir,
inputs=None, text_inputs=None) -> summary dict, also written to out_dir/training.json
(loop.write_summary; the keys run_experiment records: n_train, n_val, best_epoch,
best_val_accuracy, epochs, train_seconds, train_images_per_second, n_parameters,
resumed_from_epoch; any `extra` dict is copied into metrics.json as it is). Every trainer runs the
one loop, training.fit, with its own hooks; none tests or writes metrics.json (experiments does).

- `cross_entropy` (default for every attributor kind): `attribench.training.loop.train_run`, Xu et al.'s recipe.
- `supcon` (kind `jiang_siamese`): Jiang et al.'s Eq. 1 encoder training over prompt-group batches
  (`attribench.methods.jiang_train`).

A trainer names the attributor kinds it trains when it registers; every other kind gets
`cross_entropy`. The run's model.json + model.safetensors must load with `train.load_model`.
"""

from __future__ import annotations

from typing import Callable, Iterable

from attribench.core.registry import Registry
from attribench.training.loop import train_run

Trainer = Callable[..., dict]
TRAINERS = Registry("trainer")
KIND_TRAINER: dict[str, str] = {}  # attributor kind -> trainer name (kinds not listed: cross_entropy)
DEFAULT = "cross_entropy"


def register_trainer(name: str, kinds: Iterable[str] = ()) -> Callable[[Trainer], Trainer]:
    def deco(fn: Trainer) -> Trainer:
        TRAINERS.register(name)(fn)
        for kind in kinds:
            if kind in KIND_TRAINER:
                raise ValueError(f"attributor kind {kind!r} already has trainer {KIND_TRAINER[kind]!r}")
            KIND_TRAINER[kind] = name
        return fn

    return deco


def trainer_name(kind: str) -> str:
    return KIND_TRAINER.get(kind, DEFAULT)


def trainer_for(kind: str) -> Trainer:
    return TRAINERS.lookup(trainer_name(kind))


def _cross_entropy(index, spec, out_dir, inputs=None, text_inputs=None) -> dict:
    return train_run(index, spec, out_dir, inputs=inputs, text_inputs=text_inputs)


register_trainer(DEFAULT)(_cross_entropy)
