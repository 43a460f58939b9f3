"""cdiff studio: a web page over :class:`cdiff.Pipeline` (``cdiff app``; the optional ``app`` extra).

- :mod:`cdiff.app.studio`: the models of one run, loaded once, one job at a time, files per visitor;
  a generation streams previews of the predicted x_0 (no Gradio);
- :mod:`cdiff.app.canvas`: one brush per CelebAMask-HQ class, the legend, painted canvas → label map
  (nearest palette colour, with a note when colours were snapped) (no Gradio);
- :mod:`cdiff.app.views`: influence maps at a step, the mean weight of each model over t, overlays
  (no Gradio);
- :mod:`cdiff.app.server`, :mod:`cdiff.app.generate_tab`, :mod:`cdiff.app.edit_tab`,
  :mod:`cdiff.app.results`, :mod:`cdiff.app.page`: the Gradio page, its queue and its API
  (``/generate``, ``/edit``, ``/render``).

Nothing here is imported by ``cdiff`` itself: Gradio loads only when the app starts.
"""
