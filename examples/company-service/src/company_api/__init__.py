"""company-service: company CRUD behind API Gateway (one Lambda function per verb)."""
