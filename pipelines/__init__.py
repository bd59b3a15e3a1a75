"""ppml.pipelines: TFX integration and the `ppml` command line.

Importing this package imports neither TensorFlow nor TFX; components load them when used.
"""
