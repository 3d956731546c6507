"""Models: one-stage YOLACT-family and Mask R-CNN (instance) and FCN+PSPNet (semantic) builders by name, self-describing
checkpoints, pretrained-weight fetching and devices. torch and torchvision only: no file
formats, no printing."""
