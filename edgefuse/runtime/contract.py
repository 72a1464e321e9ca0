"""The model ↔ sensor-kit contract, checked before a run starts (``run``, ``replay``).

A model's tensor spec (its manifest) names the cameras, LiDARs and radars it reads and the point fields it
needs from them: ``lidar_features`` / ``radar_features`` every sensor of the kind must give (x y z, then
e.g. intensity, doppler), ``radar_optional_features`` it uses where the radar measures them (RCS, SNR: a
radar without one gets it masked, never another quantity in its place). A kit offers, per sensor, its kind
and the fields its driver gives (:class:`SensorOffer`; None where they are known only once data arrive,
e.g. a PCD folder). :func:`check_contract` refuses a mismatch with one line naming the sensor, the field
and what the driver gives, and returns notes on what will run empty or masked: a sensor of the model the kit
lacks (its input stays invalid, as when a sensor dies — the model is trained with modality dropout) and
the optional fields a radar lacks.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from edgefuse.errors import InputError
from edgefuse.tensors import TensorSpec


class ContractError(InputError):
    """A model that cannot run on a kit: names the sensor, the feature and what the driver gives."""


@dataclass(frozen=True)
class SensorOffer:
    """What one sensor of a kit gives: ``kind`` (camera, lidar, radar, …), ``fields`` (point fields of its
    clouds or scans; None = not known before data arrive) and ``driver`` (the URI scheme or ``log``, for
    messages)."""

    sensor_id: str
    kind: str
    fields: tuple[str, ...] | None
    driver: str


def model_label(backend) -> str:
    """The backend's model file, for messages (its backend name when it has no file)."""
    return str(getattr(backend, "path", None) or backend.name)


def check_contract(manifest, offers: Mapping[str, SensorOffer], model: str) -> list[str]:
    """Hold the model's ``manifest`` (its tensor spec) against the kit's ``offers`` (sensor id → offer).
    Raises :class:`ContractError` on the first mismatch; returns notes (optional radar fields a sensor
    lacks, which are masked; fields that cannot be checked before data arrive)."""
    spec = TensorSpec.from_dict(manifest.tensor_spec, f"{model}: manifest tensor_spec")
    notes: list[str] = []
    wanted = [(s, "camera", ()) for s in spec.cameras]
    wanted += [(s, "lidar", spec.lidar_features[3:]) for s in spec.lidars]
    wanted += [(s, "radar", spec.radar_features[3:]) for s in spec.radars]
    for sid, kind, required in wanted:
        offer = offers.get(sid)
        if offer is None:  # a subset of the model's sensors: that input stays invalid, as for a dead sensor
            have = sorted(o.sensor_id for o in offers.values() if o.kind == kind)
            notes.append(f"{sid}: not in the kit (its {kind}s: {have or 'none'}); the model's {kind} input "
                         "stays empty")  # fmt: skip
            continue
        if offer.kind != kind:
            raise ContractError(f"{model}: needs {sid!r} as a {kind}; the kit has it as a {offer.kind}")
        if kind == "camera":
            continue
        if offer.fields is None:
            notes.append(f"{sid} ({offer.driver}): fields known once data arrive; needs {list(required)}")
            continue
        missing = [f for f in required if f not in offer.fields]
        if missing:
            raise ContractError(
                f"{model}: {kind} {sid!r} must give {missing[0]!r}; its driver ({offer.driver}) gives "
                f"{' '.join(offer.fields)}"
            )
        if kind == "radar":
            for f in spec.radar_optional_features:
                if f not in offer.fields:
                    notes.append(f"{sid} ({offer.driver}): no {f!r}; its optional {f} input is masked")
    return notes
