"""What a check returns: a status, the diagnosis, a hint and the formula, shown as text or HTML."""

import html
import textwrap
from dataclasses import dataclass

PASSED, FAILED, NOT_DONE, ERROR = "passed", "failed", "not done", "error"

# symbol, label, text colour, background colour for each status.
_STYLES = {
    PASSED: ("✓", "passed", "#1b5e20", "#e8f5e9"),
    FAILED: ("✗", "not right yet", "#b71c1c", "#ffebee"),
    NOT_DONE: ("○", "not done yet", "#8a4b00", "#fff3e0"),
    ERROR: ("✗", "could not be checked", "#b71c1c", "#ffebee"),
}


@dataclass(frozen=True, repr=False)
class CheckResult:
    """What a check found: a status, the diagnosis, a hint and the formula to compare with.

    status: "passed", "failed" (a wrong answer), "not done" (the stub still raises
    NotImplementedError) or "error" (not a function, or it raised). diagnosis: a short stable
    code naming the mistake ("std_is_variance", ...), handy in tests. `bool(result)` is `.passed`.
    Prints as plain text in a terminal and as a coloured box in a notebook.
    """

    exercise: str
    status: str
    message: str
    diagnosis: str
    hint: str = ""
    formula: str = ""

    @property
    def passed(self):
        return self.status == PASSED

    def __bool__(self):
        return self.passed

    @property
    def headline(self):
        symbol, label, _, _ = _STYLES[self.status]
        return f"{symbol} {self.exercise}: {label}"

    def __str__(self):
        lines = [self.headline]
        paragraphs = self.message.split("\n") + ([f"Hint: {self.hint}"] if self.hint else [])
        for paragraph in paragraphs:
            lines += textwrap.wrap(paragraph, width=88, initial_indent="  ", subsequent_indent="  ")
        if self.formula:
            lines.append(f"  Compare with:  {self.formula}")
        return "\n".join(lines)

    def __repr__(self):
        return str(self)

    def _repr_html_(self):
        _, _, colour, background = _STYLES[self.status]
        esc = html.escape
        parts = [
            f'<div style="border-left:6px solid {colour};background:{background};color:#1a1a1a;'
            'padding:8px 12px;margin:4px 0;font-family:system-ui,-apple-system,sans-serif;line-height:1.45">',
            f'<div style="color:{colour};font-weight:bold">{esc(self.headline)}</div>',
            f"<div>{esc(self.message).replace(chr(10), '<br>')}</div>",
        ]
        if self.hint:
            parts.append(f'<div style="margin-top:4px"><b>Hint:</b> {esc(self.hint)}</div>')
        if self.formula:
            parts.append(
                '<div style="margin-top:4px"><b>Compare with:</b> <code style="background:#ffffff;'
                f'color:#1a1a1a;padding:1px 5px;border-radius:3px">{esc(self.formula)}</code></div>'
            )
        parts.append("</div>")
        return "".join(parts)


def use_if_passed(result, student_fn, reference_fn):
    """`student_fn` if the check `result` passed, else `reference_fn`, so the lesson continues.

    In a notebook, after the exercise cell:
        result = check_reparameterize(my_reparameterize); result
        reparameterize = use_if_passed(result, my_reparameterize, vae_lesson.reparameterize)
    and the later cells call `reparameterize`, which is the student's own code once it is right.
    """
    if not isinstance(result, CheckResult):
        raise TypeError(
            f"use_if_passed needs the CheckResult a check returned, got {type(result).__name__}; "
            "call it as use_if_passed(check_x(my_fn), my_fn, reference_fn)."
        )
    return student_fn if result.passed else reference_fn
