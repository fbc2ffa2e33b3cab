"""The Hydra configs of the command lines (``conf/``), found from any directory, and composed
from Python exactly as the command lines compose them."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from omegaconf import DictConfig

from bundlenet.errors import InputError

# shipped inside the package (bundlenet/conf in a wheel), or conf/ beside the package in a
# source checkout
_PACKAGED = Path(__file__).resolve().parent / "conf"
CONF_DIR = _PACKAGED if _PACKAGED.is_dir() else Path(__file__).resolve().parents[1] / "conf"


def check_choices(conf_dir: Path, overrides: Sequence[str]) -> None:
    """Refuse ``group=name`` overrides (e.g. ``data=wine2``) naming a config that does not exist,
    with one :class:`InputError` line that lists the choices. Sweeps (``data=torus,moebius``) are
    checked value by value."""
    for arg in overrides:
        key, sep, value = arg.lstrip("+~").partition("=")
        if not sep or "." in key or not (conf_dir / key).is_dir():
            continue
        choices = sorted(p.stem for p in (conf_dir / key).glob("*.yaml"))
        for name in value.split(","):
            name = name.strip()
            if name and name != "null" and name not in choices and not name.startswith(("choice(", "range(", "glob(")):
                raise InputError(f"unknown {key} '{name}'; choose one of: {', '.join(choices)}")


def compose(config_name: str, overrides: Sequence[str] = ()) -> DictConfig:
    """The config ``conf/<config_name>.yaml`` with its defaults and ``overrides`` (Hydra's
    override grammar, as on the command line), without the ``hydra`` node: keys that
    interpolate ``${hydra:...}`` (``paths.output_dir``) must be set by an override."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    check_choices(CONF_DIR, overrides)
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3", job_name="bundlenet"):
            return hydra_compose(config_name, overrides=list(overrides))
    except (HydraException, OmegaConfBaseException) as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise InputError(f"bad override in {list(overrides)}: {first}") from None
