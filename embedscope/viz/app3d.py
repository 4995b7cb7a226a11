"""The ``embedscope serve`` page for 3-D layouts: the rotatable 3-D view and a colour selector.

The 2-D explorer's tools work on a raster of x and y (search highlights, box and lasso
selections, region labels, a click's neighbours); none of them has a meaning on a
rotating cloud yet, so this page leaves them out and says so, rather than drawing a
2-D map that hides z. Plotly draws the view in the browser (WebGL) from the points of
one shared :class:`embedscope.viz.view3d.View3D`: sampled and escaped once for every
session.
"""

from __future__ import annotations

import logging
from typing import Any

__all__ = ["MISSING_3D", "Explorer3D"]

log = logging.getLogger(__name__)

#: What the 2-D explorer has and this page has not, said on the page.
MISSING_3D = ("Not in the 3-D view: search, box/lasso selection and export, region labels and a click's "
              "neighbours (they work on 2-D maps: reduce with --n-components 2).")


class Explorer3D:
    """One browser session's page for a 3-D layout.

    Parameters
    ----------
    data : embedscope.viz.app.AppData
        Ready, 3-D (``data.is_3d``), with its shared ``view3d``.
    """

    def __init__(self, data: Any) -> None:
        import panel as pn

        from embedscope.viz._text import safe_text
        from embedscope.viz.view3d import PLOTLY_CONFIG

        self.data = data
        view = data.view3d
        options = ["(none)", *data.meta_columns]
        self.color = pn.widgets.Select(label="Colour by", options=options, value=data.color or "(none)", width=220)
        self.message = pn.pane.Markdown("", css_classes=["es-3d-message"], width=240)
        # stretch_both: the figure (autosized) fills the window beside the sidebar
        self.pane = pn.pane.Plotly(sizing_mode="stretch_both", min_height=400, min_width=400,
                                   config=dict(PLOTLY_CONFIG))
        drawn = (f"{view.rows.size:,} points drawn of {view.n_points:,} (a seeded uniform sample)"
                 if view.note else f"{view.n_points:,} points")
        help_text = "Drag to rotate, scroll to zoom, hover a point for its metadata."
        sidebar = pn.Column(
            pn.pane.Markdown(f"### embedscope\n{safe_text(data.note, 400)}\n\n{drawn}"),
            self.color, pn.pane.Markdown(help_text), self.message,
            pn.pane.Markdown(MISSING_3D, css_classes=["es-3d-missing"]), width=260)
        self.color.param.watch(lambda event: self._draw(event.new), "value")
        self._draw(self.color.value)
        self.layout = pn.Row(sidebar, self.pane, sizing_mode="stretch_both")

    def _draw(self, choice: str) -> None:
        from embedscope.viz._text import safe_text

        color = None if choice == "(none)" else choice
        try:
            figure = self.data.view3d.figure(color)
        except Exception as exc:  # a column that cannot colour: say so, keep the figure shown
            log.warning("3-D view coloured by %r failed: %s", color, exc)
            self.message.object = f"Cannot colour by {safe_text(color)}: {safe_text(exc, 300)}"
            return
        self.message.object = ""
        self.pane.object = figure
