"""Running the planned job: local training, SageMaker, adapters, serving."""
