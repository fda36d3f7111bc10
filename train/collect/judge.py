"""The LLM judge: the ladder's `[judge]` model grades an answer against the prompt (and the
reference answer when there is one) with the rubric below, shown verbatim in docs/collect.md.

Grades 1..5 map to 0, 0.25, 0.5, 0.75, 1: with the default pass_mark 0.5 a tier passes from
grade 3 ("acceptable"); set pass_mark = 0.75 to ask for grade 4. The judge's calls, tokens and
cost are recorded apart from the tier's.
"""

from __future__ import annotations

import re
from typing import Any

from serve.model.ladder import Tier
from train.collect.caller import RetryPolicy, TierCaller
from train.collect.prompts import Prompt
from train.collect.scorers import Score

JUDGE_RUBRIC = """\
You grade one answer written by an AI assistant. Judge only whether it does what the user \
asked: correctness first, then completeness; ignore style, length and politeness unless the \
user asked for them. When a reference answer is given, treat it as correct and judge the \
answer's agreement with it in substance, not wording.

Grades:
5 - correct and complete; nothing important is missing or wrong.
4 - correct, with a small omission or imprecision that would not mislead the user.
3 - acceptable: the core is right, but it misses parts of the request or has a minor error.
2 - mostly wrong or incomplete: a user relying on it would be misled or need to ask again.
1 - wrong, off-topic, empty, or a refusal of a reasonable request.

Reply with a one-sentence reason, then a last line of the form:
GRADE: <1-5>"""

GRADE_SCORES = {1: 0.0, 2: 0.25, 3: 0.5, 4: 0.75, 5: 1.0}
_GRADE = re.compile(r"GRADE\s*[:=]\s*\**\s*([1-5])\b", re.I)


def judge_messages(prompt: Prompt, answer: str) -> list[dict[str, str]]:
    parts = ["<conversation>"]
    for m in prompt.messages:
        parts.append(f"[{m.get('role', 'user')}]\n{m.get('content', '')}")
    parts.append("</conversation>")
    if prompt.expected is not None:
        parts.append(f"<reference_answer>\n{prompt.expected}\n</reference_answer>")
    parts.append(f"<answer_to_grade>\n{answer}\n</answer_to_grade>")
    return [
        {"role": "system", "content": JUDGE_RUBRIC},
        {"role": "user", "content": "\n".join(parts)},
    ]


def parse_grade(reply: str) -> int | None:
    found = _GRADE.findall(reply)
    return int(found[-1]) if found else None


class Judge:
    def __init__(self, tier: Tier, retry: RetryPolicy | None = None, sleep: Any = None):
        self.caller = TierCaller(tier, retry, sleep)

    async def grade(self, prompt: Prompt, answer: str) -> Score:
        res = await self.caller.call(judge_messages(prompt, answer))
        info = {
            "cost_usd": res.cost_usd,
            "input_tokens": res.input_tokens,
            "output_tokens": res.output_tokens,
            "attempts": res.attempts,
            "error": res.error,
        }
        if not res.ok:
            return Score(None, f"judge: {res.error}", info)
        grade = parse_grade(res.answer or "")
        if grade is None:
            return Score(None, "judge reply has no 'GRADE: <1-5>' line", info)
        return Score(GRADE_SCORES[grade], "", info)
