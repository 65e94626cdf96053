"""Why the student's function raised: the exception's type and what it was calling, never its words.

While the student's function runs, a TorchFunctionMode notes the last torch function it called
(F.linear, torch.add, F.binary_cross_entropy, ...) with the shapes and dtypes it got, and the
traceback says whether the function's body was entered at all and which library raised
(torch.distributions' argument checks, vae_lesson's models). A hint is the first ErrorHint row,
the exercise's own rows before the shared ones, whose exception type and facts match. The text of
PyTorch's message is never read: it changes between versions, and a word in it proves nothing.
"""

from dataclasses import dataclass
from types import SimpleNamespace
from typing import Callable

import torch
from torch.overrides import TorchFunctionMode

# Attribute reads and conversions: not what a function "was doing" when it raised.
_NOT_OPERATIONS = {"__get__", "__set__", "__format__", "__repr__", "__str__", "__len__", "__bool__", "__iter__",
                   "__hash__", "__index__", "size", "dim", "numel", "__torch_function__"}
MATRIX_PRODUCTS = {"linear", "matmul", "mm", "bmm", "addmm", "einsum", "__matmul__", "__rmatmul__"}
ELEMENTWISE = {"add", "sub", "mul", "div", "true_divide", "addcmul", "where", "maximum", "minimum",
               "__add__", "__radd__", "__iadd__", "__sub__", "__rsub__", "__isub__", "__mul__", "__rmul__",
               "__imul__", "__truediv__", "__rtruediv__", "__itruediv__", "sum", "mean"}
BCE = {"binary_cross_entropy", "binary_cross_entropy_with_logits"}


class CallRecorder(TorchFunctionMode):
    """Notes the last torch function called (outermost calls only) and what it was given.

    It keeps references only, and reads names, shapes and dtypes after an error: the student's
    function may make thousands of calls, and this runs on each.
    """

    def __init__(self):
        super().__init__()
        self.func, self.arguments = None, ()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if getattr(func, "__name__", None) not in _NOT_OPERATIONS:
            self.func, self.arguments = func, (*args, *kwargs.values())
        return func(*args, **kwargs)

    @property
    def name(self):
        return None if self.func is None else getattr(self.func, "__name__", None) or str(self.func)

    @property
    def tensors(self):
        return [a for a in self.arguments if isinstance(a, torch.Tensor)]


@dataclass(frozen=True)
class ErrorHint:
    """One row: an exception of one of `types` whose facts `recognise` accepts gets `hint`."""

    types: tuple
    recognise: Callable[[SimpleNamespace], bool]
    hint: str


def facts(error, fn, recorder):
    """What the student's function was doing when `error` was raised.

    entered: its body ran (False: the call itself failed, e.g. the wrong number of arguments);
    called: the last torch function's name; shapes, dtypes: the tensors it got; in_place: it was an
    in-place method; modules: the modules of the traceback's frames.
    """
    code = getattr(fn, "__code__", None)
    frames = []
    traceback = error.__traceback__
    while traceback is not None:
        frames.append(traceback.tb_frame)
        traceback = traceback.tb_next
    entered = code is None or any(frame.f_code is code for frame in frames)
    called = recorder.name if entered else None
    shapes = [tuple(t.shape) for t in recorder.tensors]
    dtypes = {str(t.dtype).replace("torch.", "") for t in recorder.tensors}
    return SimpleNamespace(
        entered=entered,
        called=called,
        shapes=", ".join(str(s) for s in shapes) if entered else "",
        dtypes=", ".join(sorted(dtypes)) if entered else "",
        mixed_dtypes=entered and len(dtypes) > 1,
        same_shapes=len(set(shapes[:2])) <= 1,
        in_place=bool(called) and ((called.endswith("_") and not called.endswith("__")) or called.startswith("__i")),
        modules={frame.f_globals.get("__name__", "") for frame in frames},
    )


def from_module(facts, prefix):
    return any(module.startswith(prefix) for module in facts.modules)


# Shared by every check, tried after the exercise's own rows. Facts as in `facts`, plus signature.
SHARED_HINTS = (
    ErrorHint((TypeError,), lambda f: not f.entered,
              "The check calls your function as {signature}: it should take exactly these arguments, in this order."),
    ErrorHint((ValueError,), lambda f: from_module(f, "torch.distributions"),
              "torch.distributions checked the parameters you gave it and refused them: Normal(loc, scale) needs "
              "scale > 0, the standard deviation sigma = torch.exp(0.5 * logvar) (not logvar, which is negative "
              "whenever sigma < 1)."),
    ErrorHint((RuntimeError,), lambda f: f.mixed_dtypes,
              "The last torch operation, {called}, got tensors of different dtypes ({dtypes}): make every tensor "
              "float32 like the inputs (no dtype=torch.float64, no torch.from_numpy of a float64 array)."),
    ErrorHint((RuntimeError,), lambda f: f.in_place,
              "The last torch operation, {called}, works in place (a method ending in _, or +=) on a tensor "
              "autograd needs or that cannot change; use the out-of-place form."),
    ErrorHint((RuntimeError,), lambda f: f.called in MATRIX_PRODUCTS,
              "The matrix product {called} got shapes {shapes}, which do not fit together: the inner sizes must "
              "be equal. Don't hard-code sizes; take them from the inputs."),
    ErrorHint((RuntimeError,), lambda f: f.called in ELEMENTWISE,
              "The operation {called} got shapes {shapes}, which cannot be combined elementwise. Don't hard-code "
              "sizes: make new tensors with the shape of the inputs (torch.randn_like(x), x.shape[0])."),
)
DEFAULT_HINT = "Run your function on a small example in a cell of its own to see where it fails."


def hint_for(error, error_facts, exercise_hints, signature):
    """The first matching row's hint (the exercise's rows first), or DEFAULT_HINT."""
    fields = {**vars(error_facts), "signature": signature}
    for row in (*exercise_hints, *SHARED_HINTS):
        if isinstance(error, row.types) and row.recognise(error_facts):
            return row.hint.format(**fields)
    return DEFAULT_HINT
