"""`rung collect`: every tier of a ladder measured on a team's own prompts.

prompts -> caller (LiteLLM, retries, caps) -> scorers -> journal (append-only, resumable)
-> outcome table (RouterBench layout, read by `rung train` / `rung eval`) and a summary.
"""
