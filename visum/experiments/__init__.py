"""The paper's quantitative experiments on summaries (Godi, Carletti et al., BMVC 2018).

* Sec. 4.3, Table 3: the mean number of kept summaries per class against the held-out
  accuracy of several networks (:mod:`.accuracy`; ``visum experiment summaries-vs-accuracy``).
* Sec. 4.4: one linear SVM per summary on first-fully-connected-layer features, combined
  with the network's softmax by a convex weight (:mod:`.specialise`;
  ``visum experiment specialise``).

:mod:`.accuracy` and :mod:`.specialise` are pure maths on arrays; :mod:`.models`,
:mod:`.data`, :mod:`.features` and :mod:`.run` load models and images and run the
pipeline; :mod:`.report` writes tables and the figure.
"""
