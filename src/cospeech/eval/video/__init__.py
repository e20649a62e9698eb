"""Measures of any talking-person video, real or generated (``cospeech eval video``).

* :mod:`.faces`: dlib face detection, 68 landmarks and identity descriptors;
* :mod:`.sync`: audio-visual offset from mouth opening against the speech loudness;
* :mod:`.hands`: hand keypoint confidence and variance with MediaPipe Holistic;
* :mod:`.image_quality`: background flicker and Laplacian sharpness;
* :mod:`.report`: one pass over a video that gathers all of them, as a table and as JSON.
"""
