"""The sandbox coordinator-supplied templates (te reo Māori notices) are rendered in.

Template source is data from outside the codebase, so beyond Jinja's SandboxedEnvironment:
- immutable: no method of the context's lists or dicts may change them;
- bounded in size: the source, every string or list an operator builds (`*`, `+`, `%`, `**`)
  and the output are capped, and the filters that pad or reformat to an arbitrary width are
  not available;
- bounded in time: every loop iteration and every call checks a deadline and an iteration
  budget (loops are compiled with a guard around their iterable);
- errors say which kind and which template line, never a value (values are personal data).
Callers run `render` off the event loop (services/dispatch/sender.py).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator
from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, nodes
from jinja2.compiler import CodeGenerator
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError

MAX_SOURCE_CHARS = 20_000
MAX_OUTPUT_CHARS = 100_000  # an email is a few kB; far below anything that hurts
MAX_ITERATIONS = 100_000
MAX_SECONDS = 1.0
MAX_RANGE = 10_000
_UNSAFE_FILTERS = ("center", "indent", "format", "wordwrap", "filesizeformat", "pprint",
                   "urlize", "xmlattr", "tojson")


class SandboxError(Exception):
    """A coordinator template broke a bound or failed. The message names the kind of failure
    and the template line only."""


class _Budget(threading.local):
    deadline: float = 0.0
    iterations: int = 0


_budget = _Budget()


def _spend(n: int = 1) -> None:
    _budget.iterations += n
    if _budget.iterations > MAX_ITERATIONS:
        raise SecurityError("iteration budget exhausted")
    if time.monotonic() > _budget.deadline:
        raise SecurityError("time budget exhausted")


def _guard(iterable: Iterable[Any]) -> Iterator[Any]:
    for item in iterable:
        _spend()
        yield item


def _size(value: object) -> int:
    return len(value) if isinstance(value, str | bytes | list | tuple) else 0


class _GuardedLoops(CodeGenerator):
    def visit_Template(self, node: nodes.Template, frame: Any = None) -> None:  # noqa: N802
        # Before code generation (which pulls in the filters it finds): every loop's iterable
        # goes through the guard.
        for loop in node.find_all(nodes.For):
            loop.iter = nodes.Filter(loop.iter, "panui_guard", [], [], None, None,
                                     lineno=loop.lineno)
        super().visit_Template(node, frame)


class CoordinatorSandbox(ImmutableSandboxedEnvironment):
    code_generator_class = _GuardedLoops
    intercepted_binops = frozenset({"*", "+", "%", "**"})

    def __init__(self, *, autoescape: bool):
        super().__init__(autoescape=autoescape, undefined=StrictUndefined)
        for name in _UNSAFE_FILTERS:
            self.filters.pop(name, None)
        self.filters["panui_guard"] = _guard
        self.globals.pop("lipsum", None)
        self.globals["range"] = _range

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        _spend()
        if operator == "**" and (abs(_number(right)) > 64 or abs(_number(left)) > 10**6):
            raise SecurityError("power too large")
        if operator == "*":
            count = right if isinstance(right, int) else left if isinstance(left, int) else 1
            if max(_size(left), _size(right)) * abs(count) > MAX_OUTPUT_CHARS:
                raise SecurityError("product too large")
        if operator == "+" and _size(left) + _size(right) > MAX_OUTPUT_CHARS:
            raise SecurityError("concatenation too large")
        if operator == "%" and isinstance(left, str):
            raise SecurityError("printf-style formatting is not available")
        return super().call_binop(context, operator, left, right)

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        _spend()
        for value in (*args, *kwargs.values()):
            if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_OUTPUT_CHARS:
                raise SecurityError("argument too large")
        result = super().call(__context, __obj, *args, **kwargs)
        if _size(result) > MAX_OUTPUT_CHARS:
            raise SecurityError("result too large")
        return result


def _number(value: object) -> float:
    return value if isinstance(value, int | float) and not isinstance(value, bool) else 0


def _range(*args: int) -> range:
    rng = range(*args)
    if len(rng) > MAX_RANGE:
        raise SecurityError("range too large")
    return rng


_TEXT = CoordinatorSandbox(autoescape=False)
_HTML = CoordinatorSandbox(autoescape=True)


@lru_cache(maxsize=256)
def _compiled(source: str, html: bool) -> Any:
    return (_HTML if html else _TEXT).from_string(source)


def configure(configure_env: Any) -> None:
    """Give both sandboxes the renderer's filters and whitespace rules."""
    for env in (_TEXT, _HTML):
        configure_env(env)
    _compiled.cache_clear()


def render(source: str, context: dict[str, Any], *, html: bool) -> str:
    """Render coordinator template source within the bounds; SandboxError otherwise."""
    if len(source) > MAX_SOURCE_CHARS:
        raise SandboxError(f"template longer than {MAX_SOURCE_CHARS} characters")
    _budget.deadline = time.monotonic() + MAX_SECONDS
    _budget.iterations = 0
    try:
        template = _compiled(source, html)
        out: list[str] = []
        size = 0
        for piece in template.generate(context):
            size += len(piece)
            if size > MAX_OUTPUT_CHARS:
                raise SecurityError("output too large")
            out.append(piece)
            _spend(0)
        return "".join(out)
    except TemplateSyntaxError as exc:
        raise SandboxError(f"syntax error at line {exc.lineno}") from None
    except SecurityError as exc:  # our own messages: bounds, never values
        raise SandboxError(f"{exc} (line {_template_line(exc)})") from None
    except (Exception, RecursionError) as exc:  # noqa: BLE001 - a template may raise anything
        raise SandboxError(f"{type(exc).__name__} at line {_template_line(exc)}") from None


def _template_line(exc: BaseException) -> int | str:
    """The template line the error happened on (Jinja rewrites tracebacks to point there)."""
    line: int | str = "?"
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == "<template>":
            line = tb.tb_lineno
        tb = tb.tb_next
    return line
