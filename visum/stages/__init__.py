"""The stages of the paper's pipeline that are visum's own, not plugins, in pipeline order.

- :mod:`~visum.stages.regions` — a saliency mask to regions (connected components), the
  75 % rule that keeps region proposals, near-duplicates, ``Corr`` assembly (Sec. 3.2);
- :mod:`~visum.stages.matching` — the matcher plugin over every pair of images, in worker
  processes, each pair cached;
- :mod:`~visum.stages.merging` — clusters that show one part, merged (by default after the
  reliance filter, by the model's features);
- :mod:`~visum.stages.summaries` — clusters to summary candidates: one member per image and
  region, enough images;
- :mod:`~visum.stages.reliance` — how much the model relies on a summary, by removing it.

The plugin kinds (saliency, proposer, matcher, clusterer, scorer) are declared in
:mod:`visum.components`; :mod:`visum.pipeline` calls plugins and stages in order.
"""
