"""Running the planned job on SageMaker: launch (from the plan), follow-up, registry, endpoints.

``launch.prepare`` and ``launch.launch`` serve ``plan MODEL --execute --backend sagemaker``. Everything here
imports boto3 and the SageMaker SDK inside functions, so importing the package stays cheap.
"""
