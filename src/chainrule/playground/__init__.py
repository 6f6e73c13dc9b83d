"""``chainrule playground``: backpropagation you can touch, in the browser.

- :mod:`~chainrule.playground.session`: one tab's state and its actions, on the same
  :class:`chainrule.Trainer` that :func:`chainrule.fit` runs (no HTTP in it);
- :mod:`~chainrule.playground.views`: what the views show and the exports, from a session;
- :mod:`~chainrule.playground.content`: the preset data and the lesson files (``lessons/``);
- :mod:`~chainrule.playground.server`: the JSON API of docs/playground.md (FastAPI, the
  optional extra ``chainrule[playground]``) and the page (``static/``).

Its floor: the top, beside :mod:`chainrule.cli` (which imports the server only when the
command runs). Nothing in chainrule imports it.
"""
