"""The slide deck: figures and tables collected with "Add to deck" on any page, in order, with
titles and speaker notes; downloads as PowerPoint, an offline HTML deck, or a deck file that
rebuilds the same deck from its links. Everything here is in ui.deck and recipes.deck."""
import streamlit as st

from i18n import N_, _
from ui import deck
from ui.shell import setup_page

setup_page(
    N_("Slide deck"),
    N_("Every figure and table in the app has an **Add to deck** button beside its Download menu. What you "
       "add waits here, in order, while you explore: give each slide a title and speaker notes (they start "
       "with the figure's caption, the prompt and the model), reorder, then download a PowerPoint file, an "
       "offline HTML deck, or a small deck file of links and notes that rebuilds the same deck later."),
)

if deck.deck().slides:
    deck.downloads()
    st.divider()
    deck.editor()
else:
    st.info(_("The deck is empty. Open any page and click **Add to deck** under a figure or a table; it "
              "appears here, and the sidebar counts the slides."))
st.divider()
deck.upload()
