"""``cospeech serve``: a web page that turns a photo and speech into a live talking video.

:mod:`.settings` holds the limits, :mod:`.uploads` checks what a client sends,
:mod:`.jobs` runs generation in a bounded worker pool, :mod:`.app` is the FastAPI app and
``static/`` the page (WebSocket + Media Source Extensions, fragmented mp4).
"""
