"""The group report: ``group/report.html`` (:func:`bidsfusion.report.html.write_report`)."""
