"""Graders share the workbook plugin (registered through the pytest11 entry point).

Fixtures every grader gets from it: ``target_dir``, ``exercise_id``,
``load_module`` and ``webhook_receiver``. Run ``pytest graders/<id> --help`` to
see the grading options.
"""
