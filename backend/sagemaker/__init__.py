"""Running the planned job on SageMaker: launch (from the plan), follow-up, registry, endpoints.

``launch.run`` is what ``plan MODEL --execute --backend sagemaker`` calls. Everything here
imports boto3 and the SageMaker SDK inside functions, so importing the package stays cheap.
"""
