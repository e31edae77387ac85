"""Gender bias: Winogender's sentences read and checked (``winogender``), their gender-swapped
variants (``winogender.swap``: by the template's pronoun case, or the Ettin authors' rewrite), and
the gotcha preference rate with its breakdowns (``winogender.summary``). The adapter
(``harness/adapters/bias.py``) runs the models through the runner."""
