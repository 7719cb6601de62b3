"""One meaning per argument: a string prompt is one prompt, files go through ``prompts_file`` or a
``Path``, response texts and the response mode are separate, settings go through ``settings=``;
the 0.2 spellings still work until 0.5, each with one ``FutureWarning``."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest

from probattr_monitor import ProbAttrCallback, ProbeSettings
from probattr_monitor.errors import InputError, UnexpectedArgumentError

from .helpers import make_trainer

pytestmark = pytest.mark.usefixtures("fresh_deprecation_warnings")  # each test sees the warnings afresh


def future_warnings(caught) -> list[str]:
    return [str(w.message) for w in caught if issubclass(w.category, FutureWarning)]


def test_a_string_prompt_is_one_prompt_and_is_probed(tmp_path):
    callback = ProbAttrCallback(prompts="The capital of France is", report_to="none",
                                settings=ProbeSettings(max_new_tokens=2))
    assert callback.prompts == ("The capital of France is",)
    make_trainer(tmp_path, [callback], max_steps=2, save_steps=2).train()
    stored = json.loads((tmp_path / "checkpoint-2" / "probattr.json").read_text(encoding="utf-8"))
    assert [r["prompt"] for r in stored["results"]] == ["The capital of France is"]


def test_files_go_through_prompts_file_or_a_path(tmp_path):
    path = tmp_path / "prompts.txt"
    path.write_text("the cat sat on\na bird sang\n", encoding="utf-8")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # neither spelling warns
        assert ProbAttrCallback(prompts_file=str(path)).prompts == ("the cat sat on", "a bird sang")
        assert ProbAttrCallback(prompts=Path(path)).prompts == ("the cat sat on", "a bird sang")


def test_the_old_file_string_still_reads_the_file_with_a_future_warning(tmp_path):
    path = tmp_path / "prompts.txt"
    path.write_text("the cat sat on\n", encoding="utf-8")
    other = tmp_path / "other.txt"
    other.write_text("a bird sang\n", encoding="utf-8")
    for file, expected in ((path, "the cat sat on"), (other, "a bird sang"), (path, "the cat sat on")):
        # every time, naming the string: a later case was silent after the first warning
        with pytest.warns(FutureWarning, match=rf"prompts='{file}' \(the path of a file, read as prompts\) is "
                                               "deprecated.*use prompts_file="):
            assert ProbAttrCallback(prompts=str(file)).prompts == (expected,)


def test_a_0_2_settings_keyword_that_contradicts_settings_is_refused():
    from probattr_monitor import ProbeSettings
    from probattr_monitor.errors import InputError

    with pytest.raises(InputError, match=r"max_new_tokens=8 and settings with max_new_tokens=4; set it once"):
        ProbAttrCallback(prompts="a b", settings=ProbeSettings(max_new_tokens=4), max_new_tokens=8)
    with warnings.catch_warnings():  # agreeing, or settings leaving it at its default: the keyword applies
        warnings.simplefilter("ignore", FutureWarning)
        assert ProbAttrCallback(prompts="a b", settings=ProbeSettings(max_new_tokens=8),
                                max_new_tokens=8).settings.max_new_tokens == 8
        assert ProbAttrCallback(prompts="a b", settings=ProbeSettings(), max_new_tokens=8).settings.max_new_tokens == 8


def test_the_old_keywords_warn_once_and_still_work():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = ProbAttrCallback(prompts="a b", max_new_tokens=3, candidates="exact", on_save=False,
                                 on_evaluate=True, responses="generate")
        again = ProbAttrCallback(prompts="a b", max_new_tokens=3, candidates="exact", on_save=False,
                                 on_evaluate=True, responses="generate")
    messages = future_warnings(caught)
    assert len(messages) == 5, messages  # five old spellings, each warned once in all
    assert any("max_new_tokens= is deprecated" in m and "settings=ProbeSettings(max_new_tokens=...)" in m
               for m in messages)
    assert any("on_save= is deprecated" in m and "probe_on_save=" in m for m in messages)
    assert any("responses='generate' is deprecated" in m and "response_mode='generate'" in m for m in messages)
    for callback in (first, again):
        assert callback.settings == ProbeSettings(max_new_tokens=3, candidate_policy="exact", progress=False)
        assert (callback.probe_on_save, callback.probe_on_evaluate, callback.response_mode) == (False, True, "generate")


def test_an_unknown_keyword_is_a_type_error():
    with pytest.raises(UnexpectedArgumentError, match="unexpected keyword argument\\(s\\) 'max_new_token'"):
        ProbAttrCallback(max_new_token=3)


def test_the_public_signature_holds_no_catch_all_keywords():
    """The 0.2 spellings are taken by a decorator, not a ``**renamed`` in the signature: what
    ``inspect``, IDEs and type checkers see lists only the current arguments, so a typo is caught
    before run time (issue 32, item 4)."""
    import inspect

    parameters = inspect.signature(ProbAttrCallback).parameters
    assert not [p for p in parameters.values() if p.kind is inspect.Parameter.VAR_KEYWORD]
    assert "max_overhead" in parameters and "on_save" not in parameters
    with warnings.catch_warnings():  # responses given positionally still meet the 0.2 mapping
        warnings.simplefilter("error")
        assert ProbAttrCallback(["a b"], [" c"]).responses == [" c"]


@pytest.mark.parametrize("options", [{"responses": [" c", " d"]}, {}, {"response_mode": "generate"}],
                         ids=["texts", "fixed", "generate"])
def test_the_saved_arguments_rebuild_the_callback_with_warnings_as_errors(options):
    """``restore_callback_states_from_checkpoint=True`` rebuilds the callback as
    ``type(cb)(**state["args"])``: 0.3 saved ``"responses": "fixed"`` (0.2's spelling), so every
    resume warned of a deprecation the user did not cause."""
    import warnings

    from probattr_monitor import ProbAttrCallback, ProbeSettings

    callback = ProbAttrCallback(prompts=["a b", "e f"], settings=ProbeSettings(max_new_tokens=2), **options)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rebuilt = type(callback)(**callback.state()["args"])
    assert rebuilt.state()["args"] == callback.state()["args"]
    assert rebuilt.response_mode == callback.response_mode


def test_a_state_saved_by_0_2_still_restores():
    from probattr_monitor import ProbAttrCallback

    callback = ProbAttrCallback(prompts=["a b", "e f"])
    saved = {"args": {"prompts": ["a b", "e f"], "responses": "fixed"},  # 0.2: the mode under "responses"
             "attributes": {"responses": [[1, 2], [3]], "errors": 1, "logged_steps": [2]}}
    callback._restore([saved], vocab_size=50)
    assert callback.responses == [[1, 2], [3]] and callback.errors == 1 and callback.logged_steps == [2]


@pytest.mark.parametrize("arguments", [
    {"prompts": []}, {"prompts": [""]}, {"prompts": ["a"], "prompts_file": "x.txt"}, {"response_mode": "sample"},
    {"responses": "one text"}, {"responses": ["a", "b"], "prompts": ["p"]}, {"guard": [("p", None)]},
    {"settings": 3}, {"every_n_steps": 0}, {"scopes_every_n_steps": 2}, {"strict": "yes"},
    {"probe_on_evaluate": 1}, {"report_to": "tensorbored"}, {"max_overhead": 5}, {"max_new_token": 3},
], ids=lambda arguments: ",".join(arguments))
def test_every_bad_callback_argument_is_an_input_error(arguments):
    """One error family: ``except InputError`` (or ``ValueError``) catches each, at construction."""
    with pytest.raises(InputError) as caught:
        ProbAttrCallback(**arguments)
    assert isinstance(caught.value, ValueError) and "\n" not in str(caught.value)


@pytest.mark.parametrize("arguments", [
    {"monitor": "cb"}, {"statistic": "loss"}, {"patience": 0}, {"threshold": -1.0},
    {"regression_threshold": float("nan")}, {"greater_is_better": "yes"},
], ids=lambda arguments: ",".join(arguments))
def test_every_bad_early_stopping_argument_is_an_input_error(arguments):
    from probattr_monitor import ProbAttrEarlyStopping

    with pytest.raises(InputError):
        ProbAttrEarlyStopping(**arguments)
