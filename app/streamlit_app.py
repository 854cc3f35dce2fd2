"""The mpq dashboard: browse, compare and export the runs of a results store (read only).

Start it with ``mpq dashboard [--db URL]`` (or ``streamlit run app/streamlit_app.py -- --db
URL``; ``$MPQ_DB`` works too). Pages: Runs; Inspect (frontier and per-layer formats, predicted
against measured); Compare (several runs, per-layer difference of two points).
"""

import streamlit as st
import ui

st.set_page_config(page_title="mpq dashboard", page_icon=":material/tune:", layout="wide")

PAGES = {
    "Runs": [st.Page("app_pages/runs.py", title="Runs", icon=":material/list:", default=True)],
    "Inspect": [
        st.Page("app_pages/frontier.py", title="Frontier", icon=":material/scatter_plot:"),
        st.Page("app_pages/calibration.py", title="Predicted vs measured", icon=":material/query_stats:"),
    ],
    "Compare": [st.Page("app_pages/compare.py", title="Compare runs", icon=":material/compare_arrows:")],
}

page = st.navigation(PAGES)
if ui.sidebar() is None:
    st.stop()
page.run()
