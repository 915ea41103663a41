"""CardioLive: heart rate from a face video and its audio, live.

Small modules, one job each: ``pulse_av`` (built-in synthetic talking-face clips with a
known heart rate), ``face`` (face tracking and skin colour), ``rppg`` (GREEN, CHROM, POS
and heart-rate read-out), ``timeline`` (irregular frames and offset audio on one clock),
``pipeline`` (the streaming estimator), ``cardionet`` (the audio-visual network),
``task`` (its training with avfed's engine), ``service`` (the WebSocket service and page)
and ``cli`` (``avfed cardio ...``). Nothing heavy is imported here, so the CLI starts fast.
"""
