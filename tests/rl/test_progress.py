"""Off a terminal, progress is a few plain lines, not carriage-return updates."""

import io

from ript_core.rl.progress import PlainProgress, progress


class Clock:
    def __init__(self, step: float) -> None:
        self.t, self.step = 0.0, step

    def __call__(self) -> float:
        self.t += self.step
        return self.t


def test_plain_lines_every_interval_and_at_the_end():
    out = io.StringIO()
    bar = PlainProgress(range(10), "RIPT", every_s=30.0, file=out, clock=Clock(10.0))
    for i in bar:
        bar.set_postfix(success=f"{i / 10:.2f}")
    lines = out.getvalue().splitlines()
    # 10 s per item: a line every third item (30 s), and the final one
    assert lines == [
        "RIPT: 3/10 (30%) 0:30, success=0.20",
        "RIPT: 6/10 (60%) 1:00, success=0.50",
        "RIPT: 9/10 (90%) 1:30, success=0.80",
        "RIPT: 10/10 (100%) 1:50, success=0.90",
    ]
    assert "\r" not in out.getvalue()


def test_a_file_that_is_not_a_terminal_gets_plain_lines():
    stream = io.StringIO()  # isatty() is False, as for a redirected log
    bar = progress(range(5, 8), "RIPT", True, file=stream, initial=5, total=8)
    assert isinstance(bar, PlainProgress)
    assert list(bar) == [5, 6, 7]
    assert stream.getvalue().splitlines()[-1].startswith("RIPT: 8/8 (100%)")
    assert not isinstance(progress(range(3), "RIPT", False, file=stream), PlainProgress)


class Terminal(io.StringIO):
    """stdout and stderr of one terminal: what the user's screen receives."""

    def isatty(self) -> bool:
        return True


def test_a_mid_run_message_starts_on_its_own_line_below_a_live_bar(monkeypatch):
    from ript_core.rl.progress import print_above_progress

    screen = Terminal()
    monkeypatch.setattr("sys.stdout", screen)
    monkeypatch.setattr("sys.stderr", screen)
    bar = progress(range(3), "RIPT", True, total=3, mininterval=0)
    for i in bar:
        if i == 1:
            print_above_progress("evaluation (iteration 1):\n| task | success |")
    text = screen.getvalue()
    before, _, _ = text.partition("evaluation (iteration 1)")
    # the bar's line was overwritten with blanks and the cursor sent back to
    # column 0 right before the header: the header does not start after
    # "RIPT:  33%|###3 ..." on the bar's line
    last_line = before.split("\n")[-1]
    assert "RIPT" in last_line  # the bar was drawn on this line ...
    assert last_line.rpartition("\r")[2] == ""  # ... and wiped before the header
    assert last_line.rpartition("\r")[0].rpartition("\r")[2].strip() == ""
    # and the bar is drawn again after the message
    assert "RIPT" in text.partition("| task | success |")[2]
