"""Study results -> leaderboards, effect tables, importance, seed intervals and figures.

Entry points: `medguna.analysis.report.write_report(study_dirs, out_dir)` and
`medguna.analysis.console_text.short_leaderboard(study_dir, top=3)`; `load_results` for the tidy tables.
"""
