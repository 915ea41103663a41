"""A tiny name → factory registry shared by every component family.

Recipes name every component by a string, so each family keeps one registry: adding
a model is one decorator, and an unknown name fails with the list of valid ones.

Each entry also knows the keyword arguments its factory takes, as a typed schema:
either a dataclass given at registration, or one derived from the factory's signature
(or, for a ``**kwargs`` factory, from the class it returns). :meth:`Registry.check_args`
validates a recipe's argument mapping against it before anything is built, so a
misspelt or mistyped argument is named with its dotted path, never discovered as a
``TypeError`` deep inside a client.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import pkgutil
import typing
from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from avfed.config import ConfigError

T = TypeVar("T")


@dataclasses.dataclass
class Entry(Generic[T]):
    factory: Callable[..., T]
    description: str
    args: type | None = None  # explicit argument dataclass; None = derived from signature
    meta: dict[str, Any] = dataclasses.field(default_factory=dict)
    _schema: type | None = None
    _derived: bool = False


class Registry(Generic[T]):
    """Maps names to factories returning ``T``."""

    def __init__(self, kind: str, injected: tuple[str, ...] = ()) -> None:
        self.kind = kind
        # arguments the builder passes itself (never from a recipe's args mapping)
        self.injected = injected
        self._entries: dict[str, Entry[T]] = {}

    def register(
        self, name: str, description: str = "", *, args: type | None = None, **meta: Any
    ) -> Callable[[Callable[..., T]], Callable[..., T]]:
        """Decorator; ``args`` is an optional dataclass of the factory's keyword arguments,
        ``meta`` free-form facts the builder reads (e.g. ``multimodal=True``)."""

        def decorator(factory: Callable[..., T]) -> Callable[..., T]:
            if name in self._entries:
                raise ValueError(f"{self.kind} '{name}' is already registered; pick another "
                                 "name for your own component")
            doc = (factory.__doc__ or "").strip().splitlines()
            self._entries[name] = Entry(factory, description or (doc[0] if doc else ""),
                                        args, dict(meta))
            return factory

        return decorator

    def entry(self, name: str) -> Entry[T]:
        try:
            return self._entries[name]
        except KeyError:
            valid = ", ".join(sorted(self._entries)) or "(none registered)"
            raise KeyError(f"unknown {self.kind} '{name}'; valid names: {valid}") from None

    def get(self, name: str) -> Callable[..., T]:
        return self.entry(name).factory

    def meta(self, name: str, key: str, default: Any = None) -> Any:
        return self.entry(name).meta.get(key, default)

    def create(self, name: str, *args: object, **kwargs: object) -> T:
        return self.get(name)(*args, **kwargs)

    def names(self) -> list[str]:
        return sorted(self._entries)

    def describe(self) -> dict[str, str]:
        return {name: self._entries[name].description for name in self.names()}

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def check_name(self, name: str, field: str) -> None:
        if name not in self._entries:
            raise ConfigError(f"invalid recipe field '{field}': unknown {self.kind} '{name}'; "
                              f"valid: {', '.join(self.names())}")

    def check_args(self, name: str, args: Mapping[str, Any], field: str) -> dict[str, Any]:
        """Validate ``args`` for ``name``'s factory; returns them with types coerced.

        Only the keys given are returned, so the factory's own defaults still apply.
        """
        return check_arguments(self._schema(self.entry(name)), args, field,
                               f"{self.kind} '{name}'")

    def _schema(self, entry: Entry[T]) -> type | None:
        if entry.args is not None:
            return entry.args
        if not entry._derived:
            entry._schema = schema_from_signature(entry.factory, self.injected)
            entry._derived = True
        return entry._schema


def check_arguments(schema: type | None, args: Mapping[str, Any], field: str,
                    owner: str) -> dict[str, Any]:
    """Validate an argument mapping against a dataclass ``schema`` (``None``: anything
    goes); errors name ``field.key`` and the ``owner`` that takes the arguments."""
    if schema is None:
        return dict(args)
    valid = [f.name for f in dataclasses.fields(schema)]
    for key in args:
        if key not in valid:
            raise ConfigError(f"invalid recipe field '{field}.{key}': {owner} takes no "
                              f"argument '{key}'; valid: {', '.join(valid) or '(none)'}")
    try:
        merged = OmegaConf.merge(OmegaConf.structured(schema), OmegaConf.create(dict(args)))
    except OmegaConfBaseException as err:
        key = getattr(err, "full_key", None) or "?"
        message = str(err).splitlines()[0]
        raise ConfigError(f"invalid recipe field '{field}.{key}' for {owner}: {message}") from None
    resolved = OmegaConf.to_container(merged, resolve=True)
    assert isinstance(resolved, dict)
    return {key: resolved[key] for key in args}


def _parameters(target: Callable[..., Any]) -> tuple[list[inspect.Parameter], dict[str, Any],
                                                     bool]:
    """Keyword parameters of ``target`` (a class: every ``__init__`` up its MRO while they
    forward ``**kwargs``), their type hints, and whether anything else is accepted."""
    if isinstance(target, type):
        params: list[inspect.Parameter] = []
        hints: dict[str, Any] = {}
        for klass in target.__mro__:
            init = klass.__dict__.get("__init__")
            if init is None or klass is object:
                continue
            more, more_hints, open_ended = _parameters(init)
            params += [p for p in more if p.name not in {q.name for q in params}]
            hints.update({k: v for k, v in more_hints.items() if k not in hints})
            if not open_ended:
                return params, hints, False
        return params, hints, False
    signature = inspect.signature(target)
    try:
        hints = typing.get_type_hints(target)
    except Exception:  # unresolvable annotations: fall back to untyped arguments
        hints = {}
    open_ended = any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values())
    params = [p for p in signature.parameters.values()
              if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name != "self"]
    return params, hints, open_ended


def _omegaconf_type(annotation: Any, default: Any) -> Any:
    """``annotation`` if OmegaConf can enforce it with this default, else ``Any``."""
    probe = dataclasses.make_dataclass(
        "Probe", [("x", annotation, dataclasses.field(default_factory=lambda: default))])
    try:
        OmegaConf.structured(probe)
    except Exception:
        return Any
    return annotation


def schema_from_signature(factory: Callable[..., Any], injected: tuple[str, ...] = ()
                          ) -> type | None:
    """A dataclass of ``factory``'s keyword arguments with their defaults and types.

    A ``**kwargs`` factory is described by the class it returns (its annotation), as
    registries commonly wrap a class in a function. ``None`` when nothing is known.
    """
    params, hints, open_ended = _parameters(factory)
    if open_ended:
        returned = hints.get("return")
        if not isinstance(returned, type):
            return None
        more, more_hints, open_ended = _parameters(returned)
        params += [p for p in more if p.name not in {q.name for q in params}]
        hints = {**more_hints, **hints}
    fields = []
    for p in params:
        if p.name in injected or p.default is inspect.Parameter.empty:
            continue
        kind = _omegaconf_type(hints.get(p.name, Any), p.default)
        fields.append((p.name, kind, dataclasses.field(
            default_factory=lambda d=p.default: d)))
    return dataclasses.make_dataclass(f"{getattr(factory, '__name__', 'factory')}_args", fields)


def import_submodules(package_name: str, package_path: list[str]) -> None:
    """Import every module of a package so that their ``@register`` decorators run.

    Each family's ``__init__`` calls this: a new model file registers itself by existing,
    with no central list to edit (and none to forget).
    """
    for info in pkgutil.iter_modules(package_path):
        if not info.name.startswith("_"):
            importlib.import_module(f"{package_name}.{info.name}")
