"""What tools/build_default_model.py builds the shipped model from: EfficientNet-Lite0 in Keras and a torch weight reader.

Not part of the package: only that tool (and its tests) use these modules.
"""
