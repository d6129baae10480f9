"""The reasoning server (`reason-serve`): any controller behind an OpenAI-compatible endpoint.

A fan over the core like evals/: it builds its parts through `reasoning.build` and solves each
request with `reasoning.solver.solve_problem`, the one solve path of the CLI and the API.
Nothing imports serve/.
"""
