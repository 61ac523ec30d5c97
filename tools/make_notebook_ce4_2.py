"""Writes notebooks/ce4_2.ipynb (outputs stripped). Run from the repository root."""
import nbformat as nbf
nb = nbf.v4.new_notebook()
md, code = nbf.v4.new_markdown_cell, nbf.v4.new_code_cell
nb.cells = [
md("""# CE4.2 — Data drift detection

A model is trained on one picture of the world; production keeps sending it new ones. **Data drift** is the input distribution moving away from what the model learned on. In this exercise you build the detector a monitoring pipeline runs on every window of production data.

You edit **`exercises/ce4_2/drift.py`**: the class `DriftDetector` with

* `compute_stats(data)` — everything the tests need to know about the reference, computed **once**;
* `detect_drift(new_data, threshold=0.05)` — a report per feature: test statistic, p-value, PSI, KL divergence, drifted or not; and a verdict for the whole window;
* `alert_if_drift(new_data, webhook=...)` — one alert per drift episode, to a URL or a function.

The conventions (the graders compare your numbers with scipy and the textbook formulas):

| feature | test | also reported |
|---|---|---|
| numeric | two-sample Kolmogorov–Smirnov, two-sided (`scipy.stats.ks_2samp`) | PSI on 10 reference-quantile bins, KL(new ‖ ref) |
| categorical | chi-square of homogeneity on category-aligned counts (`scipy.stats.chi2_contingency`) | PSI and KL over categories |

A feature has drifted when its p-value is **below** the threshold; the window has drifted when at least half of its features have.

This notebook is your playground: it loads *your* module, so re-run a cell after you save the file. The last cell grades your work."""),
code("""import numpy as np
import pandas as pd
import matplotlib.pyplot as plt

from workbook import load_exercise

drift = load_exercise("ce4_2", "drift")  # your exercises/ce4_2/drift.py, freshly loaded"""),
md("""## Reference data and three production windows

The reference is what the model was trained on. The windows are what production sends later: one drawn the same way, one whose numbers moved, one with a category the model has never seen."""),
code("""rng = np.random.default_rng(1)

def make_frame(n, loc=0.0, scale=1.0, colours=("red", "green", "blue"), probs=(0.5, 0.3, 0.2)):
    return pd.DataFrame({
        "amount": rng.lognormal(3 + loc, 0.5 * scale, n),
        "age": rng.normal(40 + 5 * loc, 12 * scale, n),
        "colour": rng.choice(np.array(colours, dtype=object), n, p=probs),
    })

reference = make_frame(5000)
windows = {
    "same distribution": make_frame(800),
    "shifted numbers": make_frame(800, loc=0.4, scale=1.3),
    "new category": make_frame(800, colours=("red", "green", "blue", "purple"), probs=(0.35, 0.25, 0.15, 0.25)),
}
reference.describe(include="all")"""),
md("## Look before you test\n\nDrift you can see in a plot should also show up in your report."),
code("""fig, axes = plt.subplots(len(windows), 3, figsize=(13, 3.2 * len(windows)))
for row, (name, window) in zip(axes, windows.items()):
    for ax, column in zip(row[:2], ["amount", "age"]):
        bins = np.histogram_bin_edges(pd.concat([reference[column], window[column]]), bins=40)
        ax.hist(reference[column], bins=bins, density=True, alpha=0.5, label="reference")
        ax.hist(window[column], bins=bins, density=True, alpha=0.5, label=name)
        ax.set_title(f"{column} — {name}")
        ax.legend()
    shares = pd.DataFrame({
        "reference": reference["colour"].value_counts(normalize=True),
        name: window["colour"].value_counts(normalize=True),
    }).fillna(0)
    shares.plot.bar(ax=row[2], title=f"colour — {name}", rot=0)
fig.tight_layout()"""),
md("## Run your detector\n\nEach row is one feature of one window. Compare the p-values with what the plots suggest. Remember that at `threshold=0.05` about one calm feature in twenty is flagged by chance: that is what the threshold means."),
code("""detector = drift.DriftDetector(reference)

def as_row(window_name, name, result):
    get = (lambda key: result[key]) if isinstance(result, dict) else (lambda key: getattr(result, key))
    keys = ["method", "statistic", "p_value", "psi", "kl_divergence", "drifted"]
    return {"window": window_name, "feature": name, **{key: get(key) for key in keys}}

rows = []
for window_name, window in windows.items():
    report = detector.detect_drift(window, threshold=0.05)
    features = report["features"] if isinstance(report, dict) else report.features
    rows += [as_row(window_name, name, result) for name, result in features.items()]
pd.DataFrame(rows).round(4)"""),
md("## Alerts\n\nAn alert belongs to a drift *episode*: the first drifted window sends one, the next drifted windows stay quiet, and a calm window ends the episode. Here the webhook is a plain function, so you can see what would be sent."),
code("""sent = []
for window_name in ["same distribution", "shifted numbers", "shifted numbers", "same distribution", "shifted numbers"]:
    fired = detector.alert_if_drift(windows[window_name], webhook=sent.append)
    print(f"{window_name:<18} alert sent: {fired}")
print(f"\\n{len(sent)} alerts; the first names {sent[0]['drifted_features'] if sent else 'nothing'}")"""),
md("## Check your work\n\nThis runs the same graders as `workbook check ce4_2` (and `pytest graders/ce4_2`) on your file. A real HTTP receiver is started for the alert checks."),
code("""from workbook.notebook import check

check("ce4_2")"""),
]
nb.metadata = {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
               "language_info": {"name": "python"}}
nbf.write(nb, "notebooks/ce4_2.ipynb")
