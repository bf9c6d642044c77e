"""Questions the demo knowledge base (kb/demo) answers: what the benchmarks and
the load generator ask the system that `make run` starts."""

DEMO_QUESTIONS = [
    "How do I enable two-factor authentication?",
    "Which plans include single sign-on?",
    "What is the API rate limit on the Team plan?",
    "Can I get a refund on a monthly plan?",
    "How do I export my data to S3?",
    "Why do I get E-1042 batch too large after the 4.3 release?",
    "How do I configure SAML single sign-on?",
    "How long do you keep my data on the Free plan?",
    "How do I set up a webhook?",
    "What does error E-2010 mean?",
    "How do I delete a user's data for GDPR?",
]
