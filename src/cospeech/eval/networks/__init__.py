"""Feature networks of the published evaluation metrics (FID, FVD, LPIPS, ...), written in
plain torch with parameter names that match the public weight files, loaded by
:mod:`cospeech.eval.networks.weights` (never by unpickling arbitrary objects)."""
