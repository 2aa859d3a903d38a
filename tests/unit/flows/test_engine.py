"""The pure flow interpreter, walking the example main menu."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from services.lib.flows import engine as e
from services.lib.flows.validate import FlowInvalid

MENU = json.loads((Path(__file__).resolve().parents[3] / "schemas/flows/examples/main_menu.json").read_text())


def entered(actions) -> list[str]:
    return [a.name for a in actions if isinstance(a, e.EnterStep)]


def to_main_menu():
    state, actions = e.start(MENU)
    assert actions == (e.EnterStep("welcome", "say"), e.Say("Thanks for calling Acme.", "en-US-Neural2-F"))
    assert state.waiting == "prompt"
    state, actions = e.on_input(MENU, state, e.PromptFinished())
    assert entered(actions) == ["main_menu"]
    [g] = [a for a in actions if isinstance(a, e.Gather)]
    assert g.step == "main_menu" and g.num_digits == 1 and g.type == "dtmf speech" and g.barge_in
    assert g.prompt[0].text.startswith("For sales, press 1") and g.attempt == 1
    assert state.waiting == "gather" and state.step == "main_menu"
    return state


def test_press_2_goes_to_the_sub_menu_and_1_then_records():
    state = to_main_menu()
    state, actions = e.on_input(MENU, state, e.GatherCompleted(digits="2"))
    assert entered(actions) == ["support_menu"]
    [g] = [a for a in actions if isinstance(a, e.Gather)]
    assert [p.text for p in g.prompt][0] == "Support."
    state, actions = e.on_input(MENU, state, e.GatherCompleted(digits="1"))
    assert entered(actions) == ["support_internet"]
    state, _ = e.on_input(MENU, state, e.PromptFinished())
    state, actions = e.on_input(MENU, state, e.PromptFinished())
    assert actions == (e.EnterStep("record_message", "record"), e.Record("record_message", "mono", 120, True))
    state, _ = e.on_input(MENU, state, e.PromptFinished())
    state, actions = e.on_input(MENU, state, e.PromptFinished())
    assert actions == (e.EnterStep("end", "hangup"), e.Hangup("hangup step")) and state.done
    assert state.path == ("welcome", "main_menu", "support_menu", "support_internet", "leave_message",
                          "record_message", "goodbye", "end")


def test_press_9_repeats_the_menu_and_0_in_the_sub_menu_goes_back():
    state = to_main_menu()
    state, actions = e.on_input(MENU, state, e.GatherCompleted(digits="9"))
    assert entered(actions) == ["main_menu"] and any(isinstance(a, e.Gather) for a in actions)
    state, actions = e.on_input(MENU, state, e.GatherCompleted(digits="2"))
    state, actions = e.on_input(MENU, state, e.GatherCompleted(digits="0"))
    assert entered(actions) == ["main_menu"]


def test_press_1_sales_with_pause():
    state = to_main_menu()
    state, actions = e.on_input(MENU, state, e.GatherCompleted(digits="1"))
    assert entered(actions) == ["sales"]
    state, actions = e.on_input(MENU, state, e.PromptFinished())
    assert actions == (e.EnterStep("sales_hold", "pause"), e.Pause(1.0))


def test_speech_keyword_and_spoken_digit():
    state = to_main_menu()
    s1, actions = e.on_input(MENU, state, e.GatherCompleted(speech="Uh, Billing please", confidence=0.8))
    assert entered(actions) == ["billing"]
    assert actions[-1] == e.CallWebhook("https://example.com/ivr/billing", "billing", "", "Uh, Billing please")
    s2, actions = e.on_input(MENU, state, e.GatherCompleted(speech="two"))
    assert entered(actions) == ["support_menu"]


def test_unmatched_input_goes_to_default():
    state = to_main_menu()
    state, actions = e.on_input(MENU, state, e.GatherCompleted(digits="7"))
    assert entered(actions) == ["invalid"]
    state, actions = e.on_input(MENU, state, e.PromptFinished())
    assert entered(actions) == ["main_menu"]


def test_timeouts_reprompt_up_to_max_retries_then_on_timeout():
    state = to_main_menu()
    for attempt in (2, 3):  # max_retries = 2
        state, actions = e.on_input(MENU, state, e.GatherTimeout())
        assert entered(actions) == ["main_menu"]
        assert [a.attempt for a in actions if isinstance(a, e.Gather)] == [attempt]
    state, actions = e.on_input(MENU, state, e.GatherTimeout())
    assert entered(actions) == ["goodbye"]


def test_timeout_without_on_timeout_or_default_hangs_up():
    flow = {"start": "m", "steps": {"m": {"kind": "gather", "max_retries": 1, "branches": {"1": "x"}},
                                    "x": {"kind": "hangup"}}}
    state, _ = e.start(flow)
    state, _ = e.on_input(flow, state, e.GatherTimeout())
    state, actions = e.on_input(flow, state, e.GatherTimeout())
    assert actions == (e.Hangup("no input"),) and state.done


def test_unmatched_without_default_reprompts_then_hangs_up():
    flow = {"start": "m", "steps": {"m": {"kind": "gather", "max_retries": 1, "branches": {"1": "x"}},
                                    "x": {"kind": "hangup"}}}
    state, _ = e.start(flow)
    state, actions = e.on_input(flow, state, e.GatherCompleted(digits="5"))
    assert entered(actions) == ["m"]
    state, actions = e.on_input(flow, state, e.GatherCompleted(digits="5"))
    assert actions == (e.Hangup("no valid input"),)


def test_stale_and_unrelated_inputs_are_ignored():
    state = to_main_menu()
    assert e.on_input(MENU, state, e.PromptFinished()) == (state, ())
    assert e.on_input(MENU, state, e.GatherCompleted(digits="1", step="welcome")) == (state, ())
    assert e.on_input(MENU, state, e.WebhookAnswered(())) == (state, ())


def test_webhook_answer_runs_the_apps_steps_then_next():
    state = to_main_menu()
    state, _ = e.on_input(MENU, state, e.GatherCompleted(digits="3"))
    assert state.waiting == "webhook"
    answer = ({"kind": "say", "text": "Your balance is 10 dollars."},
              {"kind": "gather", "num_digits": 1, "prompt": {"kind": "say", "text": "Press 1 to pay."},
               "branches": {"1": "sales"}})
    state, actions = e.on_input(MENU, state, e.WebhookAnswered(answer))
    assert actions == (e.EnterStep("billing.0", "say"), e.Say("Your balance is 10 dollars.", "en-US-Neural2-F"))
    state, actions = e.on_input(MENU, state, e.PromptFinished())
    assert entered(actions) == ["billing.1"]
    state, actions = e.on_input(MENU, state, e.GatherTimeout())  # retries: re-prompt
    state, actions = e.on_input(MENU, state, e.GatherTimeout())
    state, actions = e.on_input(MENU, state, e.GatherTimeout())
    assert entered(actions) == ["goodbye"]  # falls through to the webhook step's next


def test_bad_or_failed_webhook_answer_continues_with_next():
    state = to_main_menu()
    state, _ = e.on_input(MENU, state, e.GatherCompleted(digits="3"))
    _, actions = e.on_input(MENU, state, e.WebhookAnswered(({"kind": "transfer"},)))
    assert entered(actions) == ["goodbye"]
    _, actions = e.on_input(MENU, state, e.WebhookAnswered(({"kind": "goto", "step": "nowhere"},)))
    assert entered(actions) == ["goodbye"]
    _, actions = e.on_input(MENU, state, e.WebhookFailed("HTTP 500"))
    assert entered(actions) == ["goodbye"]


def test_pin_flow_passes_digits_to_the_webhook():
    flow = json.loads((Path(__file__).resolve().parents[3] / "schemas/flows/examples/pin_entry.json").read_text())
    state, _ = e.start(flow)
    state, actions = e.on_input(flow, state, e.GatherCompleted(digits="1234", finished_on_key="#"))
    assert actions[-1] == e.CallWebhook("https://yourapp.com/ivr/pin", "check_pin", "1234", None)
    state, actions = e.on_input(flow, state, e.WebhookAnswered(({"kind": "say", "text": "Thanks"},)))
    state, actions = e.on_input(flow, state, e.PromptFinished())
    assert actions == (e.Hangup("flow ended"),) and state.done


def test_state_round_trips_through_a_dict():
    state = to_main_menu()
    state, _ = e.on_input(MENU, state, e.GatherCompleted(digits="3"))
    state, _ = e.on_input(MENU, state, e.WebhookAnswered(({"kind": "say", "text": "hi"},)))
    again = e.FlowState.from_dict(json.loads(json.dumps(state.to_dict())))
    assert again == state
    assert e.on_input(MENU, again, e.PromptFinished()) == e.on_input(MENU, state, e.PromptFinished())


def test_start_refuses_an_invalid_flow():
    with pytest.raises(FlowInvalid):
        e.start({"start": "a", "steps": {"a": {"kind": "goto", "step": "a"}}})


def test_runaway_dynamic_loop_hits_the_step_limit():
    flow = {"start": "w", "steps": {"w": {"kind": "webhook", "url": "https://x.example/"}}}
    state, _ = e.start(flow)
    state, actions = e.on_input(flow, state, e.WebhookAnswered(({"kind": "goto", "step": "w"},)))
    n = 0
    while not state.done and n < 2000:
        state, actions = e.on_input(flow, state, e.WebhookAnswered(({"kind": "goto", "step": "w"},)))
        n += 1
    assert state.done and actions[-1] == e.Hangup("step limit reached")


def test_match_branch():
    b = {"1": "a", "12": "b", "billing": "c", "account balance": "d", "*": "e"}
    assert e.match_branch(b, "12", None) == "b"
    assert e.match_branch(b, "", "check my ACCOUNT balance please") == "d"
    assert e.match_branch(b, "", "billingual") is None
    assert e.match_branch(b, "", "one two") == "b"
    assert e.match_branch(b, "", "star") == "e"
