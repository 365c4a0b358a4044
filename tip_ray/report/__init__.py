"""`tip-ray report`: a run folder or a sweep report folder as one self-contained HTML page.

reading (files -> typed records, tolerant, secrets masked), plots (one function per plot),
sweep_view (the sweep report's own tables and plot), page (the HTML), build (the three joined).
"""
