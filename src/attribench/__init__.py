"""attribench: which text-to-image generator made this image, or is it a real photo?"""

__version__ = "0.1.0"
