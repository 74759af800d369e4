"""Every message's fields, declared once (``docs/protocol.md`` §4 and §5): header key, type, default, array dtypes and
ranks, and the checks a value must pass. ``codec`` encodes and decodes each message by running over its entry here,
so a new field is one line in this table (and its attribute on the message class in ``messages``).

Requests are decoded strictly (the backend refuses anything not declared); replies leniently (unknown keys are
ignored), with the same declarations.
"""

from __future__ import annotations

import math
from typing import Any, Final

from .fields import ArrayField, ArrayListField, BlobField, Field, MessageSpec
from .messages import (
    COLOURSPACES,
    IMAGE_DTYPES,
    LABEL_DTYPES,
    SMOOTH_DTYPES,
    SOFT_MASK_DTYPES,
    Cancel,
    CancelReply,
    ErrorCode,
    Hello,
    HelloReply,
    Limits,
    ModelInfo,
    Passes,
    ProtocolError,
    RegionSpec,
    Release,
    ReleaseReply,
    Reply,
    Request,
    Shutdown,
    ShutdownReply,
    Smooth,
    SmoothReply,
    StylePut,
    StylePutReply,
    StyleRef,
    Stylize,
    StylizeReply,
    Timing,
)
from .options import COLOR_MODES, MAX_ID_LENGTH, MIN_TILE
from .reader import Reader, number, type_name

OPTIONAL_LIMITS = ("max_inflight",)  # limits an older backend does not state (their defaults stand)
MASK_DTYPES: Final = LABEL_DTYPES + SOFT_MASK_DTYPES  # a label map's or soft masks'; the rank tells which


# ------------------------------------------------------------------------------- request checks
def _frame_channels(r: Reader, image: Any) -> None:
    if image is not None and image.shape[2] not in (3, 4):
        raise r.fail(f"image must be (H, W, 3) RGB or (H, W, 4) RGBA, got shape {list(image.shape)}", ErrorCode.BAD_ARRAY)


def _put_image(r: Reader, image: Any, before: dict[str, Any]) -> Any:
    if (before["encoded"] is None) == (image is None):
        raise r.fail("give either encoded (the bytes of a PNG/JPEG file) or image (an (H, W, 3|4) array)")
    _frame_channels(r, image)
    return image


def _put_encodable(msg: StylePut) -> None:
    if (msg.encoded is None) == (msg.image is None):
        raise ProtocolError(ErrorCode.BAD_REQUEST, "style.put takes either encoded image bytes or an image array")


def _size(r: Reader, size: int, before: dict[str, Any]) -> int:
    if size < 0:
        raise r.fail(f"size must be >= 0 (0: keep the size), got {size}")
    return size


def _frame(r: Reader, image: Any, before: dict[str, Any]) -> Any:
    _frame_channels(r, image)
    return image


def _colourspace(r: Reader, colourspace: str, before: dict[str, Any]) -> str:
    if colourspace not in COLOURSPACES:
        raise r.fail(
            f"unknown colourspace {colourspace!r}: this backend takes {', '.join(COLOURSPACES)} (display-referred sRGB "
            "values in [0, 1]); convert scene-linear renders through the view transform first"
        )
    return colourspace


def _regions_to_wire(regions: tuple[RegionSpec, ...]) -> list[dict[str, Any]]:
    return [{"styles": [{"id": s.id, "weight": s.weight} for s in r.styles], "alpha": r.alpha} for r in regions]


def _regions(r: Reader, raw: list[Any], before: dict[str, Any]) -> tuple[RegionSpec, ...]:
    if not raw:
        raise r.fail("regions must hold at least one region")
    return tuple(_region(r, i, reg) for i, reg in enumerate(raw))


def _region(r: Reader, i: int, reg: Any) -> RegionSpec:
    if not isinstance(reg, dict) or set(map(str, reg)) - {"styles", "alpha"} or not isinstance(reg.get("styles"), list):
        raise r.fail(f"regions[{i}] must be a map {{styles: [{{id, weight}}, ...], alpha}}, got {reg!r:.80}")
    if not reg["styles"]:
        raise r.fail(f"regions[{i}] has no styles")
    styles = []
    for j, s in enumerate(reg["styles"]):
        if not isinstance(s, dict) or set(map(str, s)) - {"id", "weight"} or not isinstance(s.get("id"), str):
            raise r.fail(f"regions[{i}].styles[{j}] must be a map {{id: string, weight: number}}, got {s!r:.80}")
        weight = s.get("weight", 1.0)
        if isinstance(weight, bool) or not isinstance(weight, (int, float)):
            raise r.fail(f"regions[{i}].styles[{j}].weight must be a number, got {type_name(weight)}")
        styles.append(StyleRef(s["id"], number(r, f"regions[{i}].styles[{j}].weight", weight, 0.0, math.inf)))
    if sum(s.weight for s in styles) <= 0:
        raise r.fail(f"regions[{i}] style weights are all zero; give at least one a positive weight")
    alpha = reg.get("alpha", 1.0)
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)):
        raise r.fail(f"regions[{i}].alpha must be a number in [0, 1], got {type_name(alpha)}")
    return RegionSpec(tuple(styles), number(r, f"regions[{i}].alpha", alpha, 0.0, 1.0))


def _masks(r: Reader, masks: Any, before: dict[str, Any]) -> Any:
    """A label map (H, W) or soft masks (R, H, W) that fit the image and the regions; none for a single region."""
    regions, (h, w) = before["regions"], before["image"].shape[:2]
    if masks is None:
        if len(regions) != 1:
            raise r.fail(f"{len(regions)} regions need masks (a label map or soft masks); without masks give one region")
    elif masks.ndim == 2:
        if masks.dtype.name not in LABEL_DTYPES:
            raise r.fail(f"a label map (H, W) must be {', '.join(LABEL_DTYPES)}, got {masks.dtype.name}", ErrorCode.BAD_ARRAY)
        if masks.shape != (h, w):
            raise r.fail(f"label map is {list(masks.shape)} but the image is [{h}, {w}]", ErrorCode.BAD_ARRAY)
    else:
        if masks.dtype.name not in SOFT_MASK_DTYPES:
            raise r.fail(
                f"soft masks (R, H, W) must be {', '.join(SOFT_MASK_DTYPES)}, got {masks.dtype.name}", ErrorCode.BAD_ARRAY
            )
        if masks.shape != (len(regions), h, w):
            raise r.fail(f"soft masks are {list(masks.shape)} but {len(regions)} region(s) on a [{h}, {w}] image need "
                         f"[{len(regions)}, {h}, {w}]", ErrorCode.BAD_ARRAY)  # fmt: skip
    return masks


def _passes_to_wire(passes: Passes) -> dict[str, bool]:
    return {"combined": passes.combined, "regions": passes.regions}


def _passes(r: Reader, raw: dict[Any, Any], before: dict[str, Any]) -> Passes:
    extra = sorted(set(map(str, raw)) - {"combined", "regions"})
    if extra:
        raise r.fail(f"passes has unknown key(s) {extra}; use combined and regions")
    values = {k: raw.get(k, default) for k, default in (("combined", True), ("regions", False))}
    for k, v in values.items():
        if not isinstance(v, bool):
            raise r.fail(f"passes.{k} must be a boolean, got {type_name(v)}")
    if not (values["combined"] or values["regions"]):
        raise r.fail("passes asks for nothing: set combined and/or regions to true")
    return Passes(values["combined"], values["regions"])


def _tile(r: Reader, tile: int | None, before: dict[str, Any]) -> int | None:
    if tile is not None and tile != 0 and tile < MIN_TILE:
        raise r.fail(f"tile must be 0/nil (no tiling) or at least {MIN_TILE} pixels, got {tile}")
    return tile or None


def _smooth_frame(r: Reader, stylized: Any, before: dict[str, Any]) -> Any:
    _frame_channels(r, stylized)
    return stylized


def _same_size(name: str, channels: tuple[int, ...], what: str, *, plus_stylized: bool = False) -> Any:
    """A check that an array of a smooth request is (H, W, n) like ``stylized``, n in ``channels`` (plus stylized's
    C with ``plus_stylized``)."""

    def check(r: Reader, arr: Any, before: dict[str, Any]) -> Any:
        h, w, c = before["stylized"].shape
        allowed = [n + c if plus_stylized else n for n in channels]
        if arr.shape[:2] != (h, w) or arr.shape[2] not in allowed:
            shapes = " or ".join(f"[{h}, {w}, {n}]" for n in allowed)
            raise r.fail(f"{name} ({what}) must be {shapes} for a stylized frame of {list(before['stylized'].shape)}, "
                         f"got {list(arr.shape)}", ErrorCode.BAD_ARRAY)  # fmt: skip
        return arr

    return check


_HISTORY = _same_size("history", (3, 5), "the previous output, render [and motion]", plus_stylized=True)


def _strength(r: Reader, strength: Any, before: dict[str, Any]) -> float:
    value = number(r, "strength", strength, 0.0, 1.0)
    if value >= 1.0:
        raise r.fail(f"strength must be within [0, 1) (1 would never let the frame change), got {value}")
    return value


def _target(r: Reader, target: str, before: dict[str, Any]) -> str:
    if not 0 < len(target) <= MAX_ID_LENGTH:
        raise r.fail(f"target must be a request id of 1 to {MAX_ID_LENGTH} characters")
    return target


# ------------------------------------------------------------------------------- reply checks
def _model_to_wire(model: ModelInfo) -> dict[str, str]:
    return {"encoder": model.encoder, "decoder": model.decoder, "iterations": model.iterations}


def _limits_to_wire(limits: Limits) -> dict[str, int]:
    return {k: getattr(limits, k) for k in Limits.__dataclass_fields__}


def _model(r: Reader, model: dict[Any, Any], before: dict[str, Any]) -> ModelInfo:
    try:
        return ModelInfo(str(model["encoder"]), str(model["decoder"]), str(model["iterations"]))
    except (KeyError, TypeError, ValueError) as e:
        raise r.fail(f"hello reply has incomplete model or limits: {e}") from e


def _limits(r: Reader, limits: dict[Any, Any], before: dict[str, Any]) -> Limits:
    try:
        return Limits(**{k: int(limits[k]) for k in Limits.__dataclass_fields__ if k in limits or k not in OPTIONAL_LIMITS})
    except (KeyError, TypeError, ValueError) as e:
        raise r.fail(f"hello reply has incomplete model or limits: {e}") from e


def _timing_to_wire(timing: Timing) -> dict[str, float]:
    return {"queued_ms": timing.queued_ms, "compute_ms": timing.compute_ms}


def _timing(r: Reader, timing: dict[Any, Any], before: dict[str, Any]) -> Timing:
    return Timing(float(timing.get("queued_ms", 0.0)), float(timing.get("compute_ms", 0.0)))


def _as_tuple(r: Reader, value: list[Any], before: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(value)


# ------------------------------------------------------------------------------- the declarations
def _s(name: str, **kw: Any) -> Field:
    return Field(name, str, **kw)


def _i(name: str, **kw: Any) -> Field:
    return Field(name, int, **kw)


REQUEST_SPECS: Final[dict[type[Request], MessageSpec]] = {
    Hello: MessageSpec((_s("client", default=""),)),
    StylePut: MessageSpec(
        (
            BlobField("encoded", default=None, write_none=False),
            ArrayField("image", default=None, write_none=False, dtypes=IMAGE_DTYPES, ndims=(3,), check=_put_image),
            _s("colourspace", default="srgb", choices=COLOURSPACES, only_if=lambda m: m.image is not None),
            _i("size", default=0, what="an integer >= 0 (0: keep the size)", check=_size),
        ),
        encodable=_put_encodable,
    ),
    Stylize: MessageSpec(
        (
            ArrayField("image", dtypes=IMAGE_DTYPES, ndims=(3,), check=_frame),
            _s("colourspace", what="a colourspace tag", check=_colourspace),
            Field("regions", list, what="a list of {styles, alpha}", to_wire=_regions_to_wire, check=_regions),
            ArrayField("masks", default=None, write_none=False, dtypes=MASK_DTYPES, ndims=(2, 3), check=_masks),
            _s("preserve_color", default="none", choices=COLOR_MODES),
            Field("passes", dict, default={}, what="a map {combined, regions}", to_wire=_passes_to_wire, check=_passes),
            _i("tile", default=None, what="an integer (pixels) or nil", check=_tile),
            _s("output_dtype", default=None, choices=IMAGE_DTYPES),
        )
    ),
    Smooth: MessageSpec(
        (
            ArrayField("stylized", dtypes=SMOOTH_DTYPES, ndims=(3,), check=_smooth_frame),
            ArrayField("content", dtypes=SMOOTH_DTYPES, ndims=(3,), check=_same_size("content", (3,), "the render's RGB")),
            ArrayField("history", dtypes=SMOOTH_DTYPES, ndims=(3,), check=_HISTORY),
            ArrayField("flow", dtypes=SMOOTH_DTYPES, ndims=(3,), check=_same_size("flow", (2,), "dx, drow")),
            Field("strength", (int, float), what="a number in [0, 1)", check=_strength),
            _s("output_dtype", default=None, choices=IMAGE_DTYPES),
        )
    ),
    Cancel: MessageSpec((_s("target", check=_target),)),
    Release: MessageSpec((Field("styles", bool, default=False),)),
    Shutdown: MessageSpec(()),
}

REPLY_SPECS: Final[dict[type[Reply], MessageSpec]] = {
    HelloReply: MessageSpec(
        (
            _i("protocol"),
            _s("server"),
            _s("instance"),
            _s("device"),
            _s("precision"),
            Field("model", dict, to_wire=_model_to_wire, check=_model),
            Field("limits", dict, to_wire=_limits_to_wire, check=_limits),
            Field("colourspaces", list, default=[], to_wire=list, check=_as_tuple),
            Field("ops", list, default=[], to_wire=list, check=_as_tuple),
        )
    ),
    StylePutReply: MessageSpec((_s("style"), _i("width"), _i("height"), Field("cached", bool))),
    StylizeReply: MessageSpec(
        (
            ArrayField("combined", default=None, dtypes=IMAGE_DTYPES, ndims=(3,)),
            ArrayListField("passes", default=[], dtypes=IMAGE_DTYPES, ndims=(3,)),
            _s("colourspace"),
            Field("timing", dict, default={}, to_wire=_timing_to_wire, check=_timing),
        )
    ),
    SmoothReply: MessageSpec(
        (
            ArrayField("image", dtypes=IMAGE_DTYPES, ndims=(3,)),
            Field("timing", dict, default={}, to_wire=_timing_to_wire, check=_timing),
        )
    ),
    CancelReply: MessageSpec((_s("target"), _s("state"))),
    ReleaseReply: MessageSpec((_i("styles_dropped"), _i("device_allocated"), _i("device_reserved"))),
    ShutdownReply: MessageSpec(()),
}
REPLY_TYPES: Final[dict[str, type[Reply]]] = {
    c.OP: c for c in (HelloReply, StylePutReply, StylizeReply, SmoothReply, CancelReply, ReleaseReply, ShutdownReply)
}
