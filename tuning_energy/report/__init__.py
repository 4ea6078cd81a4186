"""What a person reads: report.md and compare.md, figures, the dashboard, exports."""
