"""Video colorization with VCGAN's hybrid recurrent GAN (Zhao et al., IEEE TMM 2023).

A grayscale frame and the previous colorized frame, warped to the current one by optical
flow, feed a U-Net whose chroma output is composed with the frame's own luminance. The
modules are small and separate: :mod:`.color` (colour spaces), :mod:`.generator`,
:mod:`.discriminator`, :mod:`.flow`, :mod:`.losses`, :mod:`.metrics`, :mod:`.color_clips`
(built-in data), :mod:`.datasets` (DAVIS / Videvo-style folders), :mod:`.task` (the
registered ``vcgan`` task), :mod:`.stream` (``avfed colorize run``) and :mod:`.cli`.
Nothing heavy is imported here, so the command line starts fast.
"""
